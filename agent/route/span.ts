// The mesh's attributes on a routed request's client span: one set for HTTP/1.1 (proxy.ts) and
// HTTP/2 (h2.ts), so that a trace reads the same whichever protocol the client spoke.
import type { Service, Workload } from '../../api/agent-sync.ts';
import { workloadName } from '../proxy/report.ts';

export function routedSpanAttributes(source: Workload, service: Service, route: string, rule: string): Record<string, string> {
  return {
    'weft.direction': 'outbound',
    'weft.source.workload': workloadName(source),
    'weft.source.namespace': source.namespace,
    'weft.source.pod': source.name,
    'weft.source.principal': source.identity,
    'weft.destination.service': service.key,
    'weft.route': route,
    'weft.route.rule': rule,
  };
}
