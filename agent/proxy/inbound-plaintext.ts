// Inbound plaintext (port 15006): TCP to an enrolled pod that did not come through a tunnel — a
// client outside the mesh. It goes through admission (admit.ts) with no identity: STRICT refuses
// it, and only access rules about addresses and ports can allow it.
//
// The node's own connections arrive here too (redirect/rules.ts): to a meshed pod's address, or to
// the address of a Service that a meshed pod of this node backs. For a Service the endpoint is
// picked here, as kube-proxy would have: a meshed pod of this node is admitted like any plaintext
// client; any other endpoint is none of this node's business and is passed through as it was.
import { createServer, type Socket } from 'node:net';
import { dialTarget } from '../hbone/target.ts';
import { originalDst } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import { admit } from './admit.ts';
import { resolveTarget } from './destination.ts';
import type { ProxyInputs } from './inputs.ts';
import { CaptureListener } from './listener.ts';
import { peerOf, relay } from './relay.ts';
import type { OpenedInfo } from './report.ts';

export class InboundPlaintextProxy {
  readonly #p: ProxyInputs;
  readonly #listener: CaptureListener;
  #rr = 0;

  constructor(p: ProxyInputs) {
    this.#p = p;
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
    const { store, report } = this.#p;
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
    if (!destination || destination.node !== this.#p.node || !destination.meshed) {
      if (service) return this.#passThrough(down, { direction: 'inbound-plaintext', mode: 'passthrough', source, destination, target, service, peer: peerOf(down) });
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: `${target.ip} is not a meshed pod on this node` });
      return void down.resetAndDestroy();
    }
    const info: OpenedInfo = { direction: 'inbound-plaintext', mode: 'plaintext', source, destination, target, service, peer: peerOf(down) };
    const attrs = { source: { ip: down.remoteAddress ?? '' }, destination, port: target.port, destinationIp: target.ip };
    const a = await admit(this.#p, { attrs, info, plaintext: true, uncaptured: true });
    switch (a.kind) {
      case 'refused':
        return void down.resetAndDestroy();
      case 'inspect':
        return a.serve(down);
      case 'unreachable':
        report.refused({ ...info, reason: `connect to ${target.ip}:${target.port}: ${a.reason}` });
        return void down.resetAndDestroy();
      case 'connected': {
        const conn = report.opened(a.info);
        relay(down, a.socket, (o) => conn.closed(o), this.#p.idleTimeoutMs);
      }
    }
  }

  /** A Service endpoint that is not a meshed pod of this node: relayed as kube-proxy would have. */
  async #passThrough(down: Socket, info: OpenedInfo): Promise<void> {
    try {
      const up = await dialTarget(info.target, { timeoutMs: this.#p.connectTimeoutMs, uncaptured: true });
      const conn = this.#p.report.opened(info);
      relay(down, up, (o) => conn.closed(o), this.#p.idleTimeoutMs);
    } catch (e) {
      this.#p.report.refused({ ...info, reason: (e as Error).message });
      down.resetAndDestroy();
    }
  }
}
