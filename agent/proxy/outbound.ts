// Outbound (port 15001): TCP that an enrolled pod on this node sends. The destination the pod
// dialled is recovered from the redirect; a Service address is balanced over its ready
// endpoints here (the capture runs before kube-proxy). A meshed destination is reached through an
// HBONE tunnel to its node — or, on this node, handed straight to the inbound path; anything else
// is connected to directly (passthrough).
import type { ClientHttp2Stream } from 'node:http2';
import { createServer, type Socket } from 'node:net';
import type { Service, Workload } from '../../api/agent-sync.ts';
import { originalDst, type Address } from '../native/sockopt.ts';
import type { StateStore } from '../state/store.ts';
import type { LocalDelivery } from './inbound.ts';
import type { ConnectionReporter } from './report.ts';
import { DEFAULT_IDLE_TIMEOUT_MS, peerOf, relay } from './relay.ts';
import { PORTS } from '../redirect/rules.ts';
import { connectUncaptured } from '../redirect/uncaptured.ts';
import { splice } from '../hbone/splice.ts';
import { CaptureListener } from './listener.ts';

export interface TunnelDialer {
  /** An HBONE stream to the destination pod's node carrying a connection to `target`. */
  dial(o: { source: Workload; destination: Workload; target: Address }): Promise<ClientHttp2Stream>;
}

export interface LocalInbound {
  /** Delivers a connection from a local meshed pod to another local pod, policy included. */
  deliver(o: { source: Workload; destination: Workload; target: Address }): Promise<LocalDelivery>;
}

export interface OutboundOptions {
  store: StateStore;
  node: string;
  tunnels: TunnelDialer;
  local: LocalInbound;
  report: ConnectionReporter;
  connectTimeoutMs?: number;
  /** Reset connections idle this long in both directions (default 1 h). */
  idleTimeoutMs?: number;
}

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

export class OutboundProxy {
  readonly #o: OutboundOptions;
  readonly #listener: CaptureListener;
  #rr = 0;

  constructor(o: OutboundOptions) {
    this.#o = o;
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
      // A same-node delivery that policy denied names the policy and rule that did.
      const { policy, rule } = e as { policy?: string; rule?: string };
      this.#o.report.refused({ direction: 'outbound', peer: peerOf(down), reason: (e as Error).message, policy, rule });
      down.resetAndDestroy();
    });
  }

  async #route(down: Socket): Promise<void> {
    const { store } = this.#o;
    down.on('error', () => {}); // reported by relay or refusal
    const dst = originalDst(down);
    const source = store.workloadByIP(down.remoteAddress ?? '');
    // Only an enrolled pod of this node gets here; anything else means the state is behind: refuse.
    if (!source || source.node !== this.#o.node) throw new Error(`unknown source ${down.remoteAddress}`);
    const resolved = resolveTarget(store, dst, (n) => this.#rr++ % n);
    if ('error' in resolved) throw new Error(resolved.error);
    const { target, service } = resolved;
    const destination = store.workloadByIP(target.ip);

    const info = { direction: 'outbound' as const, source, destination, target, service, peer: peerOf(down) };
    if (destination?.meshed && destination.node !== this.#o.node) {
      const stream = await this.#o.tunnels.dial({ source, destination, target });
      const conn = this.#o.report.opened({ ...info, mode: 'tunnel' });
      const started = performance.now();
      void splice(stream, down, { idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS }).then((r) =>
        conn.closed({
          received: r.bytesFromSocket,
          sent: r.bytesToSocket,
          durationMs: performance.now() - started,
          error: r.end === 'closed' ? '' : r.end,
        }),
      );
      return;
    }
    if (destination?.meshed === true) {
      const delivery = await this.#o.local.deliver({ source, destination, target });
      if (delivery.kind === 'inspect') return void delivery.serve(down, { ...info, mode: 'local' });
      const conn = this.#o.report.opened({ ...info, mode: 'local' });
      relay(down, delivery.socket, (outcome) => conn.closed(outcome), this.#o.idleTimeoutMs);
      return;
    }
    const up = await dialPlain(target, this.#o.connectTimeoutMs ?? 10_000);
    const conn = this.#o.report.opened({ ...info, mode: 'passthrough' });
    relay(down, up, (outcome) => conn.closed(outcome), this.#o.idleTimeoutMs);
  }
}

export function dialPlain(target: Address, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Marked: a delivery to a pod on this node must pass the node capture (redirect/uncaptured.ts).
    const s = connectUncaptured(target);
    const timer = setTimeout(() => s.destroy(new Error(`connect to ${target.ip}:${target.port} timed out`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
