// The mesh's own span attributes (`weft.*`): who talked to whom, on which node, and what policy
// said. The semantic-convention ones are set in tracer.ts.
import type { Attributes } from '@opentelemetry/api';
import type { Decision } from '../policy/decision.ts';
import { type OpenedInfo, workloadName } from '../proxy/report.ts';

/** Once per connection: the same for each of its requests. */
export function meshAttributes(info: OpenedInfo): Attributes {
  const s = info.source;
  const d = info.destination;
  const a: Attributes = {
    'weft.direction': info.direction,
    'weft.mode': info.mode,
    'weft.source.workload': s ? workloadName(s) : 'unknown',
    'weft.source.namespace': s?.namespace ?? 'unknown',
    'weft.destination.workload': d ? workloadName(d) : 'unknown',
    'weft.destination.namespace': d?.namespace ?? 'unknown',
  };
  const sourcePrincipal = info.sourcePrincipal ?? s?.identity;
  if (sourcePrincipal) a['weft.source.principal'] = sourcePrincipal;
  if (s) a['weft.source.pod'] = s.name;
  if (d?.meshed) a['weft.destination.principal'] = d.identity;
  if (d) a['weft.destination.pod'] = d.name;
  if (info.service) a['weft.destination.service'] = info.service.key;
  return a;
}

/** A request's policy decision. */
export function policyAttributes(d: Decision): Attributes {
  const a: Attributes = { 'weft.policy.decision': d.verdict };
  if (d.policy) a['weft.policy.name'] = d.policy;
  if (d.rule) a['weft.policy.rule'] = d.rule;
  if (d.verdict === 'deny') a['weft.policy.reason'] = d.reason;
  if (d.audits.length > 0) a['weft.policy.audits'] = d.audits.map((x) => `${x.policy}:${x.rule}`);
  return a;
}
