// Inbound tunnels (port 15008): HBONE connections from other agents to pods on this node. The
// connection's original destination picks the certificate the server presents (HBONE has no
// SNI); each CONNECT stream is checked — its target must be that same meshed pod — then
// authorized by policy (the client's identity is the certificate's), then connected, or handed to
// the L7 path when the port speaks HTTP and a policy needs to see requests.
// Also serves same-node delivery for the outbound path, with the same checks.
import { createServer, type Socket } from 'node:net';
import type { Workload } from '../../api/agent-sync.ts';
import type { ConnectionAttrs } from '../policy/attributes.ts';
import { HboneServer, type InboundDecision, type InboundRequest } from '../hbone/server.ts';
import { SourceClaimVerifier } from '../hbone/source-claim.ts';
import { connectTarget } from '../hbone/target.ts';
import type { CertificateManager } from '../identity/manager.ts';
import { originalDst, type Address } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import type { StateStore } from '../state/store.ts';
import { dialPlain } from './outbound.ts';
import { peerOf } from './relay.ts';
import { decidedBy, namespaceOfPrincipal, type PolicyEnforcer } from './enforcer.ts';
import { serveInspected, type InspectSettings } from './inspected.ts';
import { CaptureListener } from './listener.ts';
import type { ConnectionReporter, OpenedInfo } from './report.ts';

export interface InboundOptions {
  store: StateStore;
  node: string;
  certificates: CertificateManager;
  report: ConnectionReporter;
  enforcer: PolicyEnforcer;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  l7?: InspectSettings;
}

/** Where a same-node connection goes: spliced to the pod, or served at L7. */
export type LocalDelivery = { kind: 'socket'; socket: Socket } | { kind: 'inspect'; serve: (down: Socket, info: OpenedInfo) => Promise<void> };

export class InboundProxy {
  readonly #o: InboundOptions;
  readonly #listener: CaptureListener;
  readonly #claims: SourceClaimVerifier;
  readonly hbone: HboneServer;

  constructor(o: InboundOptions) {
    this.#o = o;
    this.#claims = new SourceClaimVerifier(o.store);
    this.hbone = new HboneServer({
      certificateFor: (ip) => {
        const w = this.#localMeshed(ip);
        return w ? o.certificates.certificateFor(w.identity) : undefined;
      },
      handler: (req) => this.#decide(req),
      onEvent: (e) => {
        if (e.type === 'connection-refused') {
          o.report.refused({ direction: 'inbound', peer: e.peerAddress ? `${e.peerAddress.ip}:${e.peerAddress.port}` : '', reason: e.reason });
        } else if (e.type === 'stream-rejected' && !e.reported) {
          o.report.refused({ direction: 'inbound', peer: '', reason: `${e.status} ${e.reason}`, sourcePrincipal: e.peerIdentity });
        } else if (e.type === 'stream-failed') {
          // A bug on the inbound path (handler or L7 server): the stream was reset; make it visible.
          o.report.refused({ direction: 'inbound', peer: '', reason: `internal error: ${e.reason}`, sourcePrincipal: e.peerIdentity });
        }
      },
    });
    this.#listener = new CaptureListener(createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.#accept(s)));
  }

  /** Binds with SO_REUSEPORT, beside the previous agent process during an upgrade (listener.ts). */
  listen(host = '0.0.0.0', port: number = PORTS.hbone): Promise<void> {
    return this.#listener.listen(host, port);
  }

  /**
   * Stops accepting tunnel connections and sends GOAWAY on the open ones (peers open their next
   * tunnels elsewhere); resolves once every tunnel connection has ended.
   */
  async drain(): Promise<void> {
    await Promise.all([this.#listener.drain(), this.hbone.drain()]);
  }

  /** Stops accepting and resets the tunnels still open. */
  async close(): Promise<void> {
    await this.hbone.close({ graceMs: 0 });
    await this.#listener.close();
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
    // The source pod as the peer agent names it counts only if its certificate and its node prove
    // it: its address then feeds ipBlocks rules. Otherwise the address is the peer agent's.
    const claim = this.#claims.verify(req.headers.baggage, { identity: req.peerIdentity, address: req.peerAddress });
    const source = claim.result === 'accepted' ? claim.source : undefined;
    const attrs: ConnectionAttrs = {
      source: { principal: req.peerIdentity, ...nsOf(req.peerIdentity), ip: source?.ips[0] ?? req.peerAddress.ip },
      destination,
      port: req.target.port,
      destinationIp: req.target.ip,
    };
    const info: OpenedInfo = { direction: 'inbound', mode: 'tunnel', source, sourcePrincipal: req.peerIdentity, destination, target: req.target, peer: `${req.peerAddress.ip}:${req.peerAddress.port}` };
    const d = this.#o.enforcer.connection(attrs);
    if (d.verdict === 'deny') {
      this.#o.report.refused({ ...info, reason: d.reason, ...decidedBy(d) });
      return { action: 'deny', status: 403, reason: d.reason, reported: true };
    }
    const dial = async (): Promise<Socket> => {
      const r = await connectTarget(req.target, { timeoutMs: this.#o.connectTimeoutMs ?? 10_000 });
      if (!r.ok) throw Object.assign(new Error(`connect to ${req.target.ip}:${req.target.port}: ${r.reason}`), { code: r.reason });
      return r.socket;
    };
    if (d.verdict === 'inspect') {
      return { action: 'serve', serve: (stream) => serveInspected({ client: stream, inspect: d, attrs, info, enforcer: this.#o.enforcer, report: this.#o.report, dial, idleTimeoutMs: this.#o.idleTimeoutMs, l7: this.#o.l7 }) };
    }
    const r = await connectTarget(req.target, { timeoutMs: this.#o.connectTimeoutMs ?? 10_000, signal: req.signal });
    if (!r.ok) return { action: 'unreachable', reason: r.reason };
    const handle = this.#o.report.opened({ ...info, ...decidedBy(d) });
    // The target socket's own counters give the bytes each way once it closes.
    const started = performance.now();
    const socket = r.socket;
    let error = '';
    const untrack = this.#o.enforcer.track({ attrs, inspected: false, close: (reason) => ((error ||= reason), socket.resetAndDestroy()) });
    socket.on('error', (e: NodeJS.ErrnoException) => (error ||= e.code ?? e.message));
    socket.once('close', () => {
      untrack();
      handle.closed({ received: socket.bytesWritten, sent: socket.bytesRead, durationMs: performance.now() - started, error });
    });
    return { action: 'connect', socket };
  }

  /**
   * Same-node delivery for the outbound path: the same authorization as a tunnel, with the source
   * pod's identity (this agent holds it) in place of a certificate. Throws `DENIED` when policy
   * refuses; the caller resets the client.
   */
  async deliver(o: { source: Workload; destination: Workload; target: Address }): Promise<LocalDelivery> {
    const attrs: ConnectionAttrs = {
      source: { principal: o.source.identity, namespace: o.source.namespace, ip: o.source.ips[0] ?? '' },
      destination: o.destination,
      port: o.target.port,
      destinationIp: o.target.ip,
    };
    const d = this.#o.enforcer.connection(attrs);
    if (d.verdict === 'deny') throw Object.assign(new Error(d.reason), { code: 'DENIED', policy: d.policy, rule: d.rule });
    const dial = () => dialPlain(o.target, this.#o.connectTimeoutMs ?? 10_000);
    if (d.verdict === 'inspect') {
      return {
        kind: 'inspect',
        serve: (down, info) => serveInspected({ client: down, inspect: d, attrs, info, enforcer: this.#o.enforcer, report: this.#o.report, dial, idleTimeoutMs: this.#o.idleTimeoutMs, l7: this.#o.l7 }),
      };
    }
    const socket = await dial();
    const untrack = this.#o.enforcer.track({ attrs, inspected: false, close: () => socket.resetAndDestroy() });
    socket.once('close', untrack);
    return { kind: 'socket', socket };
  }
}

function nsOf(principal: string): { namespace?: string } {
  const ns = namespaceOfPrincipal(principal);
  return ns === undefined ? {} : { namespace: ns };
}
