// Outbound (port 15001): TCP that an enrolled pod on this node sends. The destination the pod
// dialled is recovered from the redirect, and a Service address is balanced over its ready
// endpoints (destination.ts). Then one of three routes:
// - a meshed pod on another node: an HBONE stream from the pool (hbone/pool.ts → hbone/client.ts),
//   presenting the source pod's certificate, spliced to the client;
// - a meshed pod on this node: admission as if it had come through a tunnel (admit.ts), with the
//   identity this agent holds for the source pod, then relayed;
// - anything else: connected to directly (passthrough).
// A Service port with routes for the source pod's namespace (Gateway API, agent/route/) is served
// at L7 instead, and each request takes its own way; everything else stays on this L4 path.
import type { ClientHttp2Stream } from 'node:http2';
import { createServer, type Socket } from 'node:net';
import type { Workload } from '../../api/agent-sync.ts';
import { splice } from '../hbone/splice.ts';
import { dialTarget } from '../hbone/target.ts';
import type { TunnelRequest } from '../hbone/pool.ts';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { originalDst, type Address } from '../native/sockopt.ts';
import { RouteProxy } from '../route/proxy.ts';
import { PORTS } from '../redirect/rules.ts';
import { admit } from './admit.ts';
import { resolveTarget } from './destination.ts';
import type { ProxyInputs } from './inputs.ts';
import { CaptureListener } from './listener.ts';
import { peerOf, relay } from './relay.ts';
import type { OpenedInfo } from './report.ts';

/** How long a connection from a pod whose first certificate is still being issued waits for it. */
const FIRST_CERTIFICATE_WAIT_MS = 5000;

/** The HBONE pool (hbone/pool.ts), as the outbound path uses it. */
export interface Tunnels {
  open(request: TunnelRequest): Promise<ClientHttp2Stream>;
}

/** The certificates of this node's workloads (CertificateManager), as the outbound path uses them. */
export interface SourceCertificates {
  certificateFor(identity: string): WorkloadCertificate | undefined;
  whenReady(identity: string, signal?: AbortSignal): Promise<WorkloadCertificate>;
}

export class OutboundProxy {
  readonly #p: ProxyInputs;
  readonly #tunnels: Tunnels;
  readonly #certificates: SourceCertificates;
  readonly #listener: CaptureListener;
  readonly #routes: RouteProxy;
  #rr = 0;

  constructor(p: ProxyInputs, tunnels: Tunnels, certificates: SourceCertificates) {
    this.#p = p;
    this.#tunnels = tunnels;
    this.#certificates = certificates;
    this.#routes = new RouteProxy({ p, openTunnel: (source, destination, target) => this.#openTunnel(source, destination, target) });
    this.#listener = new CaptureListener(createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#handle(s)));
  }

  /** Binds with SO_REUSEPORT, beside the previous agent process during an upgrade (listener.ts). */
  listen(host = '0.0.0.0', port: number = PORTS.outbound): Promise<void> {
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

  #handle(down: Socket): void {
    void this.#route(down).catch((e: unknown) => {
      this.#p.report.refused({ direction: 'outbound', peer: peerOf(down), reason: (e as Error).message });
      down.resetAndDestroy();
    });
  }

  async #route(down: Socket): Promise<void> {
    const { store, report } = this.#p;
    down.on('error', ignore); // reported by relay or refusal
    const dst = originalDst(down);
    const source = store.workloadByIP(down.remoteAddress ?? '');
    // Only an enrolled pod of this node gets here; anything else means the state is behind: refuse.
    if (!source || source.node !== this.#p.node) throw new Error(`unknown source ${down.remoteAddress}`);
    const svc = store.serviceByIP(dst.ip);
    if (svc && this.#routes.routes(source, svc, dst.port)) {
      const l4 = () => void this.#l4(down, source, dst).catch((e: unknown) => {
        report.refused({ direction: 'outbound', peer: peerOf(down), reason: (e as Error).message });
        down.resetAndDestroy();
      });
      return this.#routes.serve(down, source, svc, dst.port, l4);
    }
    return this.#l4(down, source, dst);
  }

  async #l4(down: Socket, source: Workload, dst: Address): Promise<void> {
    const { store, report } = this.#p;
    const resolved = resolveTarget(store, dst, (n) => this.#rr++ % n);
    if ('error' in resolved) throw new Error(resolved.error);
    const { target, service } = resolved;
    const destination = store.workloadByIP(target.ip);
    const peer = peerOf(down);

    if (destination?.meshed && destination.node !== this.#p.node) {
      const stream = await this.#openTunnel(source, destination, target);
      const conn = report.opened({ direction: 'outbound', mode: 'tunnel', source, destination, target, service, peer });
      const started = performance.now();
      void splice(stream, down, { idleTimeoutMs: this.#p.idleTimeoutMs }).then((r) =>
        conn.closed({ received: r.bytesFromSocket, sent: r.bytesToSocket, durationMs: performance.now() - started, error: r.end === 'closed' ? '' : r.end }),
      );
      return;
    }
    if (destination?.meshed === true) {
      const info: OpenedInfo = { direction: 'outbound', mode: 'local', source, destination, target, service, peer };
      // The source pod's identity stands in for a certificate: this agent holds it.
      const attrs = { source: { principal: source.identity, namespace: source.namespace, ip: source.ips[0] ?? '' }, destination, port: target.port, destinationIp: target.ip };
      const a = await admit(this.#p, { attrs, info, plaintext: false, uncaptured: true });
      switch (a.kind) {
        case 'refused':
          return void down.resetAndDestroy();
        case 'inspect':
          return void a.serve(down);
        case 'unreachable':
          throw new Error(`connect to ${target.ip}:${target.port}: ${a.reason}`);
        case 'connected': {
          const conn = report.opened(a.info);
          return relay(down, a.socket, (o) => conn.closed(o), this.#p.idleTimeoutMs);
        }
      }
    }
    const up = await dialTarget(target, { timeoutMs: this.#p.connectTimeoutMs, uncaptured: true });
    const conn = report.opened({ direction: 'outbound', mode: 'passthrough', source, destination, target, service, peer });
    relay(down, up, (o) => conn.closed(o), this.#p.idleTimeoutMs);
  }

  #openTunnel(source: Workload, destination: Workload, target: { ip: string; port: number }): Promise<ClientHttp2Stream> {
    const open = () => this.#tunnels.open({ source: source.identity, destinationIdentity: destination.identity, target, headers: claimHeaders(source) });
    // Only a pod whose first certificate is still being issued waits (no timer per connection).
    if (this.#certificates.certificateFor(source.identity)) return open();
    return this.#certificates.whenReady(source.identity, AbortSignal.timeout(FIRST_CERTIFICATE_WAIT_MS)).then(open);
  }
}

function ignore(): void {}

/** Built once per workload object (the store replaces a workload that changes), not per connection. */
const claims = new WeakMap<Workload, { baggage: string }>();

/** Who the source pod is, for the destination agent (hbone/source-claim.ts checks it). */
function claimHeaders(w: Workload): { baggage: string } {
  let headers = claims.get(w);
  if (!headers) claims.set(w, (headers = { baggage: `k8s.namespace.name=${w.namespace},k8s.pod.name=${w.name},service.name=${w.labels.app ?? w.name}` }));
  return headers;
}
