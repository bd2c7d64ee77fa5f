// Inbound tunnels (port 15008): HBONE connections from other agents to pods on this node. The
// connection's original destination picks the certificate the server presents (HBONE has no
// SNI); each CONNECT stream is checked — its target must be that same meshed pod — then connected.
// Also serves same-node delivery for the outbound path, with the same checks.
import { createServer, type Server, type Socket } from 'node:net';
import type { Workload } from '../../api/agent-sync.ts';
import { HboneServer, type InboundDecision, type InboundRequest } from '../hbone/server.ts';
import { connectTarget } from '../hbone/target.ts';
import type { CertificateManager } from '../identity/manager.ts';
import { originalDst, type Address } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import type { StateStore } from '../state/store.ts';
import { dialPlain } from './outbound.ts';
import { peerOf } from './relay.ts';
import type { ConnectionReporter } from './report.ts';

export interface InboundOptions {
  store: StateStore;
  node: string;
  certificates: CertificateManager;
  report: ConnectionReporter;
  /** Authorization of a connection to a local workload (L4 policy plugs in here). */
  authorize: (o: { sourcePrincipal: string; destination: Workload; port: number }) => { allow: true } | { allow: false; reason: string };
  connectTimeoutMs?: number;
}

export class InboundProxy {
  readonly #o: InboundOptions;
  readonly #listener: Server;
  readonly hbone: HboneServer;

  constructor(o: InboundOptions) {
    this.#o = o;
    this.hbone = new HboneServer({
      certificateFor: (ip) => {
        const w = this.#localMeshed(ip);
        return w ? o.certificates.certificateFor(w.identity) : undefined;
      },
      handler: (req) => this.#decide(req),
      onEvent: (e) => {
        if (e.type === 'connection-refused') {
          o.report.refused({ direction: 'inbound', peer: e.peerAddress ? `${e.peerAddress.ip}:${e.peerAddress.port}` : '', reason: e.reason });
        } else if (e.type === 'stream-rejected') {
          o.report.refused({ direction: 'inbound', peer: '', reason: `${e.status} ${e.reason}`, sourcePrincipal: e.peerIdentity });
        }
      },
    });
    this.#listener = createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.#accept(s));
  }

  listen(host = '0.0.0.0', port: number = PORTS.hbone): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#listener.once('error', reject);
      this.#listener.listen({ host, port, backlog: 4096 }, () => resolve());
    });
  }

  async close(graceMs = 5000): Promise<void> {
    await new Promise<void>((resolve) => this.#listener.close(() => resolve()));
    await this.hbone.close({ graceMs });
  }

  #localMeshed(ip: string): Workload | undefined {
    const w = this.#o.store.workloadByIP(ip);
    return w && w.meshed && w.node === this.#o.node ? w : undefined;
  }

  #accept(socket: Socket): void {
    socket.on('error', () => {});
    let dst: Address;
    try {
      dst = originalDst(socket);
    } catch (e) {
      this.#o.report.refused({ direction: 'inbound', peer: peerOf(socket), reason: (e as Error).message });
      return void socket.resetAndDestroy();
    }
    this.hbone.handleConnection(socket, dst);
  }

  async #decide(req: InboundRequest): Promise<InboundDecision> {
    const destination = this.#localMeshed(req.target.ip);
    if (!destination || destination.identity !== req.localIdentity) {
      return { action: 'deny', status: 403, reason: `${req.target.ip} is not the meshed pod this tunnel was opened to` };
    }
    const verdict = this.#o.authorize({ sourcePrincipal: req.peerIdentity, destination, port: req.target.port });
    if (!verdict.allow) return { action: 'deny', status: 403, reason: verdict.reason };
    const r = await connectTarget(req.target, { timeoutMs: this.#o.connectTimeoutMs ?? 10_000, signal: req.signal });
    if (!r.ok) return { action: 'unreachable', reason: r.reason };
    const source = sourceFromBaggage(this.#o.store, req.headers.baggage);
    const handle = this.#o.report.opened({
      direction: 'inbound',
      mode: 'tunnel',
      source,
      sourcePrincipal: req.peerIdentity,
      destination,
      target: req.target,
      peer: `${req.peerAddress.ip}:${req.peerAddress.port}`,
    });
    // The target socket's own counters give the bytes each way once it closes.
    const started = performance.now();
    const socket = r.socket;
    let error = '';
    socket.on('error', (e: NodeJS.ErrnoException) => (error ||= e.code ?? e.message));
    socket.once('close', () => handle.closed({ received: socket.bytesWritten, sent: socket.bytesRead, durationMs: performance.now() - started, error }));
    return { action: 'connect', socket };
  }

  /** Same-node delivery for the outbound path: same authorization, no tunnel. */
  async deliver(o: { source: Workload; destination: Workload; target: Address }): Promise<Socket> {
    const verdict = this.#o.authorize({ sourcePrincipal: o.source.identity, destination: o.destination, port: o.target.port });
    if (!verdict.allow) throw Object.assign(new Error(verdict.reason), { code: 'DENIED' });
    return dialPlain(o.target, this.#o.connectTimeoutMs ?? 10_000);
  }
}

/**
 * The source pod, as the peer agent describes it in the W3C `baggage` header (as ztunnel does).
 * Used for metric labels only: the identity that policy sees is the certificate's, never this.
 */
function sourceFromBaggage(store: StateStore, baggage: string | string[] | undefined): Workload | undefined {
  if (typeof baggage !== 'string') return undefined;
  const fields = new Map(baggage.split(',').map((kv) => kv.trim().split('=') as [string, string]));
  const ns = fields.get('k8s.namespace.name');
  const pod = fields.get('k8s.pod.name');
  return ns && pod ? store.workload(`${ns}/${pod}`) : undefined;
}
