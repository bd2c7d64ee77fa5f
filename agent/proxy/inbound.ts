// Inbound tunnels (port 15008): HBONE connections from other agents to pods on this node. The
// connection's original destination picks the certificate the server presents (HBONE has no
// SNI); each CONNECT stream is checked — its target must be that same meshed pod — then goes
// through admission (admit.ts) with the identity the client's certificate proves.
import { createServer, type Socket } from 'node:net';
import type { Workload } from '../../api/agent-sync.ts';
import type { ConnectionAttrs } from '../policy/attributes.ts';
import { HboneServer, type InboundDecision, type InboundRequest } from '../hbone/server.ts';
import { SourceClaimVerifier } from '../hbone/source-claim.ts';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { originalDst, type Address } from '../native/sockopt.ts';
import { PORTS } from '../redirect/rules.ts';
import { admit } from './admit.ts';
import { namespaceOfPrincipal } from './enforcer.ts';
import type { ProxyInputs } from './inputs.ts';
import { CaptureListener } from './listener.ts';
import type { OpenedInfo } from './report.ts';
import { peerOf } from './relay.ts';

/** The certificates of this node's workloads (CertificateManager). */
export interface LocalCertificates {
  certificateFor(identity: string): WorkloadCertificate | undefined;
  whenReady(identity: string, signal?: AbortSignal): Promise<WorkloadCertificate>;
}

export class InboundProxy {
  readonly #p: ProxyInputs;
  readonly #listener: CaptureListener;
  readonly #claims: SourceClaimVerifier;
  readonly hbone: HboneServer;

  constructor(p: ProxyInputs, certificates: LocalCertificates) {
    this.#p = p;
    this.#claims = new SourceClaimVerifier(p.store);
    this.hbone = new HboneServer({
      certificateFor: (ip) => {
        const w = this.#localMeshed(ip);
        return w ? certificates.certificateFor(w.identity) : undefined;
      },
      // A restarted agent knows its pods (checkpoint) a moment before their certificates arrive.
      certificateArrival: (ip, signal) => {
        const w = this.#localMeshed(ip);
        return w ? certificates.whenReady(w.identity, signal).catch(() => undefined) : undefined;
      },
      handler: (req) => this.#decide(req),
      onEvent: (e) => {
        if (e.type === 'connection-refused') {
          p.report.refused({ direction: 'inbound', peer: e.peerAddress ? `${e.peerAddress.ip}:${e.peerAddress.port}` : '', reason: e.reason });
        } else if (e.type === 'stream-rejected' && !e.reported) {
          p.report.refused({ direction: 'inbound', peer: '', reason: `${e.status} ${e.reason}`, sourcePrincipal: e.peerIdentity });
        } else if (e.type === 'stream-failed') {
          // A bug on the inbound path (handler or L7 server): the stream was reset; make it visible.
          p.report.refused({ direction: 'inbound', peer: '', reason: `internal error: ${e.reason}`, sourcePrincipal: e.peerIdentity });
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
    const w = this.#p.store.workloadByIP(ip);
    return w && w.meshed && w.node === this.#p.node ? w : undefined;
  }

  #accept(socket: Socket): void {
    socket.on('error', ignore);
    let dst: Address;
    try {
      dst = originalDst(socket);
    } catch (e) {
      this.#p.report.refused({ direction: 'inbound', peer: peerOf(socket), reason: (e as Error).message });
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
    const ns = namespaceOfPrincipal(req.peerIdentity);
    const attrs: ConnectionAttrs = {
      source: { principal: req.peerIdentity, ...(ns === undefined ? {} : { namespace: ns }), ip: source?.ips[0] ?? req.peerAddress.ip },
      destination,
      port: req.target.port,
      destinationIp: req.target.ip,
    };
    const info: OpenedInfo = { direction: 'inbound', mode: 'tunnel', source, sourcePrincipal: req.peerIdentity, destination, target: req.target, peer: `${req.peerAddress.ip}:${req.peerAddress.port}` };
    // Marked like every other delivery: the pod is on this node, so the dial leaves through the
    // output path, and unmarked it would be captured again and judged as plaintext from the node.
    const a = await admit(this.#p, { attrs, info, plaintext: false, uncaptured: true, signal: req.signal });
    switch (a.kind) {
      case 'refused':
        return { action: 'deny', status: 403, reason: a.reason, reported: true };
      case 'inspect':
        return { action: 'serve', serve: a.serve };
      case 'unreachable':
        return { action: 'unreachable', reason: a.reason };
      case 'connected': {
        const handle = this.#p.report.opened(a.info);
        // The target socket's own counters give the bytes each way once it closes; the HBONE
        // server splices it to the stream.
        const started = performance.now();
        const socket = a.socket;
        let error = '';
        socket.on('error', (e: NodeJS.ErrnoException) => (error ||= e.code ?? e.message));
        socket.once('close', () => {
          handle.closed({ received: socket.bytesWritten, sent: socket.bytesRead, durationMs: performance.now() - started, error: a.revoked() || error });
        });
        return { action: 'connect', socket };
      }
    }
  }
}

function ignore(): void {}
