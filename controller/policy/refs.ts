// What a compiled policy refers to, checked against the workloads it selects: the ResolvedRefs
// condition. Uses the agents' own port and scope logic (agent/policy/), so that what status
// reports is what enforcement does.
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy, PolicyProblem } from '../../api/policy/model.ts';
import { ServicePortIndex } from '../../agent/policy/ports.ts';
import { policySelects } from '../../api/policy/selector.ts';

export function selectedBy(policy: CompiledAccessPolicy | CompiledMeshTLSPolicy, w: Workload, installNamespace: string): boolean {
  return policySelects(policy, w, installNamespace);
}

// Enough to act on; the condition message is short.
const MAX_PROBLEMS = 8;

/**
 * - a port name that no selected meshed workload has (the rule can never match that port);
 * - an HTTP-only rule (methods, paths, hosts, headers) on a port that does not speak HTTP for some
 *   selected workload: it fails closed there (an ALLOW rule never matches, a DENY rule applies to
 *   the whole port), which is rarely what its author meant.
 */
export function accessPolicyRefProblems(policy: CompiledAccessPolicy, selected: readonly Workload[], services: readonly Service[]): PolicyProblem[] {
  const meshed = selected.filter((w) => w.meshed);
  if (meshed.length === 0) return [];
  const ports = new ServicePortIndex(services);
  const problems: PolicyProblem[] = [];
  policy.rules.forEach((rule, i) => {
    rule.to.forEach((to, j) => {
      to.ports.forEach((p, k) => {
        const path = `spec.rules[${i}].to[${j}].ports[${k}]`;
        const resolved: { w: Workload; port: number }[] = [];
        for (const w of meshed) {
          if (typeof p === 'number') resolved.push({ w, port: p });
          else {
            const n = w.namedPorts[p] ?? namedServicePort(w, p, services);
            if (n !== undefined) resolved.push({ w, port: n });
          }
        }
        if (typeof p === 'string' && resolved.length === 0) {
          problems.push({ path, message: `no selected workload has a port named "${p}" (container port or Service port)` });
          return;
        }
        if (!rule.l7) return;
        const notHttp = resolved.filter(({ w, port }) => !ports.portInfo(w, port).http);
        if (notHttp.length > 0) {
          const first = notHttp[0] as { w: Workload; port: number };
          const info = ports.portInfo(first.w, first.port);
          problems.push({
            path: `spec.rules[${i}]`,
            message: `uses HTTP fields but port ${first.port} of ${first.w.key}${notHttp.length > 1 ? ` (and ${notHttp.length - 1} more)` : ''} is not an HTTP port (appProtocol "${info.appProtocol}"); there the rule fails closed: ${policy.action === 'ALLOW' ? 'it allows nothing' : 'it applies to every connection to the port'}. Declare the Service port's appProtocol (http, http2, grpc) or name it http-*/grpc-*`,
          });
        }
      });
    });
  });
  return problems.slice(0, MAX_PROBLEMS);
}

function namedServicePort(w: Workload, name: string, services: readonly Service[]): number | undefined {
  for (const s of services) {
    if (!s.ports.some((sp) => sp.name === name)) continue;
    for (const e of s.endpoints) if (e.workload === w.key && e.ports[name] !== undefined) return e.ports[name];
  }
  return undefined;
}
