// RequestMirror: a copy of a routed request sent to another Service, its answer read and dropped.
// A copy must never cost the primary request anything it can notice, so:
// - it is sent beside the primary, never before it, and nothing of the primary waits on it;
// - it gets an endpoint of its own Service by power of two choices on its own outstanding count
//   (mirrors do not skew the primaries' balancing), and a connection of its own (a pool apart from
//   the primaries', so a slow mirror backend cannot hold connections a primary would reuse);
// - the agent runs at most maxInFlight copies at once; beyond that a copy is dropped and counted
//   (a mirror backend that hangs would otherwise pile up sockets and memory without bound);
// - a copy that has no answer within timeoutMs is cancelled and counted as failed;
// - its body is copied only up to maxBodyBytes (by default the size proxy.ts buffers for retries
//   anyway): a larger request is not mirrored at all (counted as dropped), rather than mirrored
//   truncated, which a backend would see as a different request.
// The three bounds are agent configuration (MirrorLimits: WEFT_ROUTE_MIRROR_*, chart values
// agent.routes.mirror; mirror-limits.ts).
// It goes upstream the way a primary does (upstream.ts: HBONE with the client pod's certificate,
// so the mirror backend's AccessPolicy judges the real client, and the HTTP/1 write guard).
import { request as httpRequest } from 'node:http';
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { RouteMirror } from '../../api/route.ts';
import type { Address } from '../native/sockopt.ts';
import type { HeaderMap } from './filters.ts';
import { DEFAULT_MIRROR_LIMITS, type MirrorLimits } from './mirror-limits.ts';
import { routeMirrors } from './metrics.ts';
import { UpstreamOpenError, UpstreamPool, type PoolRequestOptions } from './pool.ts';
import { backendEndpoints, Outstanding, pickP2C, type Random } from './select.ts';
import { openUpstream, type UpstreamDeps } from './upstream.ts';


export interface MirrorLabels {
  destination_service: string;
  route: string;
}

export type MirrorResult = { result: 'sent' } | { result: 'failed' | 'dropped'; reason: string };

/** One endpoint of the mirror's Service port, or why there is none. */
export interface MirrorTarget {
  service: Service;
  target: Address;
  addr: string;
}

export class Mirrors {
  readonly limits: Readonly<MirrorLimits>;
  readonly #d: UpstreamDeps;
  readonly #random: Random;
  readonly #outstanding = new Outstanding();
  readonly #pools = new Map<string, UpstreamPool>();
  #inFlight = 0;

  constructor(d: UpstreamDeps, random: Random) {
    this.#d = d;
    this.#random = random;
    this.limits = d.p.routeMirror ?? DEFAULT_MIRROR_LIMITS;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The mirrors this request is copied to: each by its own share, drawn independently. */
  choose(...lists: (readonly RouteMirror[] | undefined)[]): RouteMirror[] {
    const out: RouteMirror[] = [];
    for (const list of lists) for (const m of list ?? []) if (m.numerator >= m.denominator || this.#random() * m.denominator < m.numerator) out.push(m);
    return out;
  }

  /** Counts copies that were never sent. */
  drop(l: MirrorLabels, chosen: readonly RouteMirror[], reason: string): void {
    for (const m of chosen) count(l, m, { result: 'dropped', reason });
  }

  /**
   * Collects a streamed request body beside the primary's upload (this 'data' listener only looks;
   * the primary's own reader drives the flow) and hands it to `send` when the request has ended.
   * A body past maxBodyBytes drops every chosen copy, and so does a request that goes before its end.
   */
  collect(l: MirrorLabels, chosen: readonly RouteMirror[], body: NodeJS.EventEmitter, send: (b: Buffer) => void): void {
    const copy = new BodyCopy(this.limits.maxBodyBytes);
    let ended = false;
    body.on('data', (chunk: Buffer) => copy.add(chunk));
    body.once('end', () => {
      ended = true;
      if (copy.over) this.drop(l, chosen, 'body_too_large');
      else send(copy.body);
    });
    body.once('close', () => {
      if (!ended) this.drop(l, chosen, 'aborted');
    });
  }

  /**
   * Takes a slot and an endpoint for one copy; undefined (and counted) when the agent is at its
   * limit or the Service has no ready endpoint. `release` must be called once, with the outcome.
   */
  begin(l: MirrorLabels, m: RouteMirror): { target: MirrorTarget; release: (r: MirrorResult) => void } | undefined {
    if (this.#inFlight >= this.limits.maxInFlight) {
      count(l, m, { result: 'dropped', reason: 'limit' });
      return undefined;
    }
    const b = backendEndpoints(this.#d.p.store, m.service, m.port);
    const ep = b && pickP2C(b.ready, (e) => this.#outstanding.get(b.addrOf(e)), this.#random);
    if (!b || !ep) {
      count(l, m, { result: 'failed', reason: 'no_endpoint' });
      return undefined;
    }
    const addr = b.addrOf(ep);
    const done = this.#outstanding.begin(addr);
    this.#inFlight++;
    let released = false;
    return {
      target: { service: b.svc, target: b.target(ep), addr },
      release: (r) => {
        if (released) return;
        released = true;
        this.#inFlight--;
        done();
        count(l, m, r);
      },
    };
  }

  /** Sends an HTTP/1.1 copy; never throws, never waits on anything the primary does. */
  sendHttp1(l: MirrorLabels, m: RouteMirror, source: Workload, peer: string, r: { method: string; path: string; headers: HeaderMap; body: Buffer }): void {
    const slot = this.begin(l, m);
    if (!slot) return;
    const { target, release } = slot;
    let pool = this.#pools.get(source.identity);
    if (!pool) this.#pools.set(source.identity, (pool = new UpstreamPool()));
    const headers: HeaderMap = { ...r.headers };
    if (r.body.length > 0 || headers['content-length'] !== undefined) headers['content-length'] = String(r.body.length);
    const signal = AbortSignal.timeout(this.limits.timeoutMs);
    const options: PoolRequestOptions = {
      host: target.target.ip,
      port: target.target.port,
      method: r.method,
      path: r.path,
      headers,
      setHost: false,
      agent: pool,
      weftOpen: () => openUpstream(this.#d, source, target.target, target.service, peer, signal),
    };
    let up: ReturnType<typeof httpRequest>;
    try {
      up = httpRequest(options);
    } catch {
      return release({ result: 'failed', reason: 'request' });
    }
    const onTimeout = () => up.destroy(new Error('mirror timeout'));
    signal.addEventListener('abort', onTimeout, { once: true });
    up.on('response', (resp) => {
      signal.removeEventListener('abort', onTimeout);
      release({ result: 'sent' });
      // Read and dropped, so that the connection can serve the next copy.
      resp.resume();
      resp.on('error', () => {});
    });
    up.on('error', (err) => {
      signal.removeEventListener('abort', onTimeout);
      const reason = signal.aborted ? 'timeout' : err instanceof UpstreamOpenError ? (err.refused ? 'refused' : 'connect') : 'reset';
      release({ result: 'failed', reason });
    });
    up.end(r.body);
  }
}

/** Collects a request body for a copy, up to `max` bytes; `over` once it went past. */
export class BodyCopy {
  readonly #chunks: Buffer[] = [];
  readonly #max: number;
  #size = 0;
  over = false;

  constructor(max: number = DEFAULT_MIRROR_LIMITS.maxBodyBytes) {
    this.#max = max;
  }

  add(chunk: Buffer): void {
    if (this.over) return;
    this.#size += chunk.length;
    if (this.#size > this.#max) {
      this.over = true;
      this.#chunks.length = 0;
      return;
    }
    this.#chunks.push(chunk);
  }

  get body(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

function count(l: MirrorLabels, m: RouteMirror, r: MirrorResult): void {
  routeMirrors.inc({ ...l, mirror_backend: `${m.service}:${m.port}`, result: r.result, reason: r.result === 'sent' ? '' : r.reason });
}
