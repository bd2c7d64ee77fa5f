// Admission: the one step every connection to a meshed pod of this node passes, whichever way it
// came (a tunnel stream, a same-node delivery, a plaintext client). In order:
// 1. mTLS mode — a plaintext client is refused where the destination's port is STRICT;
// 2. access policy — deny, allow, or inspect (the port speaks HTTP and a rule needs requests);
// 3. inspect: HTTP is terminated here and each request decided (inspected.ts); allow: the
//    destination is dialled and the connection stays answerable to later policy changes.
// Refusals are reported here, with the policy that decided them; what the caller does with the
// client (a 403 on the stream, a reset) is the caller's.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connectTarget, dialTarget } from '../hbone/target.ts';
import type { ConnectionAttrs } from '../policy/attributes.ts';
import { decidedBy } from './enforcer.ts';
import type { ProxyInputs } from './inputs.ts';
import { serveInspected } from './inspected.ts';
import type { OpenedInfo } from './report.ts';

export interface Candidate {
  attrs: ConnectionAttrs;
  /** What the access line says about it; its target is what is dialled. */
  info: OpenedInfo;
  /** No identity was proven (inbound plaintext): the mTLS mode applies. */
  plaintext: boolean;
  /** Dial with the bypass mark (redirect/uncaptured.ts). */
  uncaptured: boolean;
  /** Aborted when the client goes away before the destination answered. */
  signal?: AbortSignal;
}

export type Admission =
  /** Refused and reported. */
  | { kind: 'refused'; reason: string }
  /** Serve the client at L7; the access lines are written as requests finish. */
  | { kind: 'inspect'; serve: (client: Duplex) => Promise<void> }
  /** Allowed, but the destination did not answer (`reason`: the error code); not reported, callers differ. */
  | { kind: 'unreachable'; reason: string }
  /**
   * Allowed and connected. `info` carries the deciding policy; `revoked()` says why a policy
   * change closed the socket, if one did.
   */
  | { kind: 'connected'; socket: Socket; info: OpenedInfo; revoked: () => string };

export async function admit(p: ProxyInputs, c: Candidate): Promise<Admission> {
  if (c.plaintext) {
    const mtls = p.enforcer.mtlsMode(c.attrs);
    if (mtls.mode === 'STRICT') {
      const reason = 'plaintext refused: mTLS mode is STRICT';
      p.report.refused({ ...c.info, reason, policy: mtls.policy });
      return { kind: 'refused', reason };
    }
  }
  const d = p.enforcer.connection(c.attrs, c.info);
  if (d.verdict === 'deny') {
    p.report.refused({ ...c.info, reason: d.reason, ...decidedBy(d) });
    return { kind: 'refused', reason: d.reason };
  }
  const target = c.info.target;
  const dialOptions = { timeoutMs: p.connectTimeoutMs, uncaptured: c.uncaptured };
  if (d.verdict === 'inspect') {
    const dial = () => dialTarget(target, dialOptions);
    return {
      kind: 'inspect',
      serve: (client) => serveInspected({ client, inspect: d, attrs: c.attrs, info: c.info, enforcer: p.enforcer, report: p.report, dial, idleTimeoutMs: p.idleTimeoutMs, l7: p.l7, tracing: p.tracing }),
    };
  }
  const r = await connectTarget(target, c.signal ? { ...dialOptions, signal: c.signal } : dialOptions);
  if (!r.ok) return { kind: 'unreachable', reason: r.reason };
  return { kind: 'connected', socket: r.socket, info: { ...c.info, ...decidedBy(d) }, revoked: watch(p, c.attrs, r.socket) };
}

/**
 * Keeps a connected socket answerable to policy changes; returns why one closed it, if one did.
 * Outside admit(): its closures would otherwise share admit's context, and with it keep the
 * candidate (its AbortSignal) and the decision alive for the connection's whole life.
 */
function watch(p: ProxyInputs, attrs: ConnectionAttrs, socket: Socket): () => string {
  let revoked = '';
  const untrack = p.enforcer.track({ attrs, inspected: false, close: (reason) => ((revoked ||= reason), socket.resetAndDestroy()) });
  socket.once('close', untrack);
  return () => revoked;
}
