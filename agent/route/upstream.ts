// One upstream connection for one routed request, opened the way the outbound path opens a
// connection to that endpoint: an HBONE stream (presenting the client pod's certificate) to a
// meshed pod on another node, admission as a same-node delivery for a meshed pod here, a plain
// dial for anything else. Access policy is therefore still decided at the destination, on the
// real client identity; the route only chose where the request goes.
import { duplexPair, type Duplex } from 'node:stream';
import type { Service, Workload } from '../../api/agent-sync.ts';
import { connectTarget } from '../hbone/target.ts';
import { noVectoredWrites } from '../l7/writev-guard.ts';
import type { Address } from '../native/sockopt.ts';
import { admit } from '../proxy/admit.ts';
import type { ProxyInputs } from '../proxy/inputs.ts';

/** The HBONE pool and the certificates, as the outbound proxy holds them. */
export interface UpstreamDeps {
  p: ProxyInputs;
  openTunnel(source: Workload, destination: Workload, target: Address): Promise<Duplex>;
}

export type UpstreamResult = { ok: true; stream: Duplex } | { ok: false; reason: string; refused: boolean };

export async function openUpstream(d: UpstreamDeps, source: Workload, target: Address, service: Service, peer: string, signal: AbortSignal): Promise<UpstreamResult> {
  const { p } = d;
  const destination = p.store.workloadByIP(target.ip);
  try {
    if (destination?.meshed && destination.node !== p.node) {
      const stream = await d.openTunnel(source, destination, target);
      // node:http corks the header block with the body: see writev-guard.ts.
      noVectoredWrites(stream);
      return { ok: true, stream };
    }
    if (destination?.meshed) {
      const info = { direction: 'outbound' as const, mode: 'local' as const, source, destination, target, service, peer };
      const attrs = { source: { principal: source.identity, namespace: source.namespace, ip: source.ips[0] ?? '' }, destination, port: target.port, destinationIp: target.ip };
      const a = await admit(p, { attrs, info, plaintext: false, uncaptured: true, signal });
      switch (a.kind) {
        case 'refused':
          return { ok: false, reason: a.reason, refused: true };
        case 'unreachable':
          return { ok: false, reason: a.reason, refused: false };
        case 'connected':
          return { ok: true, stream: a.socket };
        case 'inspect': {
          // The destination's own L7 policy step serves one end of an in-memory pair.
          const [mine, theirs] = duplexPair();
          void a.serve(theirs).catch(() => theirs.destroy());
          return { ok: true, stream: mine };
        }
      }
    }
    const r = await connectTarget(target, { timeoutMs: p.connectTimeoutMs, uncaptured: true, signal });
    return r.ok ? { ok: true, stream: r.socket } : { ok: false, reason: r.reason, refused: false };
  } catch (e) {
    const err = e as Error & { code?: string; status?: number };
    // A tunnel the destination agent answered 401/403: policy refused the client there.
    const refused = err.status === 401 || err.status === 403 || /\b40[13]\b/.test(err.message);
    return { ok: false, reason: err.code ?? err.message, refused };
  }
}
