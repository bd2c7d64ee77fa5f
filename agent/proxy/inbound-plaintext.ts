// Inbound plaintext (port 15006): TCP to an enrolled pod that did not come through a tunnel — a
// client outside the mesh. The mTLS mode decides: PERMISSIVE delivers it, STRICT refuses it.
import { createServer, type Server, type Socket } from 'node:net';
import { originalDst } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import type { StateStore } from '../state/store.ts';
import { dialPlain } from './outbound.ts';
import { peerOf, relay } from './relay.ts';
import type { ConnectionReporter } from './report.ts';

export interface InboundPlaintextOptions {
  store: StateStore;
  node: string;
  report: ConnectionReporter;
  /** The mTLS mode for a destination workload and port (policy refines the mesh-wide default). */
  mtlsMode: (destinationKey: string, port: number) => 'STRICT' | 'PERMISSIVE';
  connectTimeoutMs?: number;
  /** Reset connections idle this long in both directions (default 1 h). */
  idleTimeoutMs?: number;
}

export class InboundPlaintextProxy {
  readonly #o: InboundPlaintextOptions;
  readonly #server: Server;

  constructor(o: InboundPlaintextOptions) {
    this.#o = o;
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => void this.#handle(s));
  }

  listen(host = '0.0.0.0', port: number = PORTS.inboundPlaintext): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port, backlog: 4096 }, () => resolve());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(down: Socket): Promise<void> {
    down.on('error', () => {});
    const { store, report } = this.#o;
    const source = store.workloadByIP(down.remoteAddress ?? '');
    let target;
    try {
      target = originalDst(down);
    } catch (e) {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), reason: (e as Error).message });
      return void down.resetAndDestroy();
    }
    const destination = store.workloadByIP(target.ip);
    if (!destination || destination.node !== this.#o.node || !destination.meshed) {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: `${target.ip} is not a meshed pod on this node` });
      return void down.resetAndDestroy();
    }
    if (this.#o.mtlsMode(destination.key, target.port) === 'STRICT') {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: 'plaintext refused: mTLS mode is STRICT', ...(source ? { source } : {}) });
      return void down.resetAndDestroy();
    }
    try {
      const up = await dialPlain(target, this.#o.connectTimeoutMs ?? 10_000);
      const conn = report.opened({ direction: 'inbound-plaintext', mode: 'plaintext', source, destination, target, peer: peerOf(down) });
      relay(down, up, (o) => conn.closed(o), this.#o.idleTimeoutMs);
    } catch (e) {
      report.refused({ direction: 'inbound-plaintext', peer: peerOf(down), target, reason: (e as Error).message });
      down.resetAndDestroy();
    }
  }
}
