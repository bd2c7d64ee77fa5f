// Inbound plaintext (port 15006): TCP to an enrolled pod that did not come through a tunnel — a
// client outside the mesh. The mTLS mode (mesh default, refined by MeshTLSPolicies) decides first:
// STRICT refuses it. Then access policy, with no identity: only rules about addresses and ports
// can allow such a client.
//
// The node's own connections arrive here too (redirect/rules.ts): to a meshed pod's address, or to
// the address of a Service that a meshed pod of this node backs. For a Service the endpoint is
// picked here, as kube-proxy would have: a meshed pod of this node is admitted like any plaintext
// client; any other endpoint is none of this node's business and is passed through as it was.
import { createServer, type Socket } from 'node:net';
import { originalDst } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import type { StateStore } from '../state/store.ts';
import { dialPlain, resolveTarget } from './outbound.ts';
import { peerOf, relay } from './relay.ts';
import type { ConnectionAttrs } from '../policy/attributes.ts';
import { decidedBy, type PolicyEnforcer } from './enforcer.ts';
import { serveInspected, type InspectSettings } from './inspected.ts';
import { CaptureListener } from './listener.ts';
import type { ConnectionReporter, OpenedInfo } from './report.ts';

export interface InboundPlaintextOptions {
  store: StateStore;
  node: string;
  report: ConnectionReporter;
  enforcer: PolicyEnforcer;
  connectTimeoutMs?: number;
  /** Reset connections idle this long in both directions (default 1 h). */
  idleTimeoutMs?: number;
  l7?: InspectSettings;
}

export class InboundPlaintextProxy {
  readonly #o: InboundPlaintextOptions;
  readonly #listener: CaptureListener;
  #rr = 0;

  constructor(o: InboundPlaintextOptions) {
    this.#o = o;
    this.#listener = new CaptureListener(createServer({ allowHalfOpen: true, noDelay: true }, (s) => void this.#handle(s)));
  }

  /** Binds with SO_REUSEPORT, beside the previous agent process during an upgrade (listener.ts). */
  listen(host = '0.0.0.0', port: number = PORTS.inboundPlaintext): Promise<void> {
    return this.#listener.listen(host, port);
  }

  /** Stops accepting; resolves once every accepted connection has ended. */
  drain(): Promise<void> {
    return this.#listener.drain();
  }

  /** Stops accepting and resets the connections still open. */
  close(): Promise<void> {
    return this.#listener.close();
  }

  async #handle(down: Socket): Promise<void> {
    down.on('error', () => {});
    const { store, report } = this.#o;
    const source = store.workloadByIP(down.remoteAddress ?? '');
    let original;
    try {
      original = originalDst(down);
    } catch (e) {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), reason: (e as Error).message });
      return void down.resetAndDestroy();
    }
    const resolved = resolveTarget(store, original, (n) => this.#rr++ % n);
    if ('error' in resolved) {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target: original, reason: resolved.error });
      return void down.resetAndDestroy();
    }
    const { target, service } = resolved;
    const destination = store.workloadByIP(target.ip);
    if (!destination || destination.node !== this.#o.node || !destination.meshed) {
      if (service) return this.#passThrough(down, { direction: 'inbound-plaintext', mode: 'passthrough', source, destination, target, service, peer: peerOf(down) });
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: `${target.ip} is not a meshed pod on this node` });
      return void down.resetAndDestroy();
    }
    const attrs: ConnectionAttrs = { source: { ip: down.remoteAddress ?? '' }, destination, port: target.port, destinationIp: target.ip };
    const mtls = this.#o.enforcer.mtlsMode(attrs);
    if (mtls.mode === 'STRICT') {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: 'plaintext refused: mTLS mode is STRICT', source, destination, policy: mtls.policy });
      return void down.resetAndDestroy();
    }
    const d = this.#o.enforcer.connection(attrs);
    const info: OpenedInfo = { direction: 'inbound-plaintext', mode: 'plaintext', source, destination, target, service, peer: peerOf(down) };
    if (d.verdict === 'deny') {
      report.refused({ ...info, reason: d.reason, ...decidedBy(d) });
      return void down.resetAndDestroy();
    }
    const dial = () => dialPlain(target, this.#o.connectTimeoutMs ?? 10_000);
    if (d.verdict === 'inspect') {
      return serveInspected({ client: down, inspect: d, attrs, info, enforcer: this.#o.enforcer, report, dial, ...(this.#o.idleTimeoutMs !== undefined ? { idleTimeoutMs: this.#o.idleTimeoutMs } : {}), l7: this.#o.l7 });
    }
    try {
      const up = await dial();
      const conn = report.opened({ ...info, ...decidedBy(d) });
      const untrack = this.#o.enforcer.track({ attrs, inspected: false, close: () => up.resetAndDestroy() });
      up.once('close', untrack);
      relay(down, up, (o) => conn.closed(o), this.#o.idleTimeoutMs);
    } catch (e) {
      report.refused({ ...info, reason: (e as Error).message });
      down.resetAndDestroy();
    }
  }

  /** A Service endpoint that is not a meshed pod of this node: relayed as kube-proxy would have. */
  async #passThrough(down: Socket, info: OpenedInfo): Promise<void> {
    try {
      const up = await dialPlain(info.target, this.#o.connectTimeoutMs ?? 10_000);
      const conn = this.#o.report.opened(info);
      relay(down, up, (o) => conn.closed(o), this.#o.idleTimeoutMs);
    } catch (e) {
      this.#o.report.refused({ ...info, reason: (e as Error).message });
      down.resetAndDestroy();
    }
  }
}
