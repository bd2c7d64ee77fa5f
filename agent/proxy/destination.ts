// Where a captured connection goes: the capture runs before kube-proxy, so a Service address is
// balanced over its ready endpoints here, as kube-proxy would have.
import type { Service } from '../../api/agent-sync.ts';
import type { Address } from '../native/sockopt.ts';
import type { StateStore } from '../state/store.ts';

/** Picks the upstream for a connection to `dst`: the Service endpoint, or `dst` itself. */
export function resolveTarget(store: StateStore, dst: Address, pick: (n: number) => number): { target: Address; service?: Service } | { error: string } {
  const svc = store.serviceByIP(dst.ip);
  if (!svc) return { target: dst };
  const port = svc.ports.find((p) => p.port === dst.port && p.protocol === 'TCP');
  if (!port) return { error: `service ${svc.key} has no TCP port ${dst.port}` };
  const ready = svc.endpoints.filter((e) => e.ready && e.ports[port.name] !== undefined);
  if (ready.length === 0) return { error: `service ${svc.key} has no ready endpoints` };
  const ep = ready[pick(ready.length)];
  if (!ep) return { error: 'endpoint selection failed' };
  return { target: { ip: ep.ip, port: ep.ports[port.name] as number }, service: svc };
}
