// The HBONE connection pool of the outbound path.
//
// Connections are keyed by (source identity, destination identity, destination HBONE address): a
// connection presents one source certificate and was verified against one destination identity,
// so only streams with the same pair may share it. Streams are multiplexed on a connection up to
// a limit (ours, or the server's SETTINGS_MAX_CONCURRENT_STREAMS if lower); then another
// connection is opened. A connection idle for idleTimeoutMs is closed; one that fails, closes or
// receives GOAWAY is evicted at once (its open streams finish on their own). drain() does the
// same to every connection when this agent process hands its node over to a newer one.
//
// A connection takes new streams only while it presents the source's current certificate: once
// that certificate is renewed the next stream opens a connection with the new one, and once it
// has expired (the controller away for too long) there is none to present, and new streams are
// refused (NO_CERTIFICATE) instead of riding a session set up before the expiry. Streams already
// open keep their connection: the handshake that authenticated them stands.
//
// open() resolves only after the server has answered 200, so no application byte has been sent
// when it fails. Two failures are what a peer agent handing its node over causes, and are retried
// on a new connection: a stream refused because its connection was going away (GOAWAY, REFUSED_STREAM),
// and a new connection reset before its TLS handshake completed — the old agent process closed
// its listener with the connection still in its accept queue (a node without
// net.ipv4.tcp_migrate_req; handover.ts), or refused it while closing. The kernel sends the next
// connection to a listener still open: the successor's.

import type http2 from 'node:http2';
import type tls from 'node:tls';
import { formatAuthority, type SocketAddress } from './authority.ts';
import { HboneConnection } from './client.ts';
import { HboneError } from './errors.ts';
import { HBONE_PORT } from './settings.ts';

export type TunnelRequest = {
  /** The identity of the workload that opened the connection (its certificate is presented). */
  source: string;
  /** The identity the destination workload must prove. */
  destinationIdentity: string;
  /** The destination pod IP and port, sent as `:authority`. */
  target: SocketAddress;
  /** Where to dial; defaults to the target IP on 15008. */
  hboneAddress?: SocketAddress;
  headers?: http2.OutgoingHttpHeaders;
  signal?: AbortSignal;
};

export type HbonePoolOptions = {
  /** The source workload's TLS context (CertificateManager.secureContextFor). */
  secureContextFor: (sourceIdentity: string) => tls.SecureContext | undefined;
  /** Streams per connection before another one is opened. Default 100. */
  maxStreamsPerConnection?: number;
  /** Close a connection without streams after this long. Default 60 s. */
  idleTimeoutMs?: number;
  /** TCP + TLS connect timeout. Default 10 s. */
  connectTimeoutMs?: number;
  /** Time for the server to answer a CONNECT. Default 10 s. */
  openTimeoutMs?: number;
  /** HBONE port on destination pods. Default 15008. */
  hbonePort?: number;
};

export type PooledConnectionStatus = {
  source: string;
  destinationIdentity: string;
  address: string;
  state: 'connecting' | 'open';
  streams: number;
  maxStreams: number;
};

/** One pool entry; `streams` counts reservations, so streams being opened already hold a slot. */
class PooledConnection {
  readonly key: string;
  readonly source: string;
  readonly destinationIdentity: string;
  readonly address: SocketAddress;
  readonly ready: Promise<HboneConnection>;
  /** The source's TLS context the connection was made with. */
  readonly secureContext: tls.SecureContext;
  connection: HboneConnection | undefined;
  streams = 0;
  evicted = false;
  idleTimer: NodeJS.Timeout | undefined;

  constructor(key: string, request: TunnelRequest, address: SocketAddress, secureContext: tls.SecureContext, connect: Promise<HboneConnection>) {
    this.key = key;
    this.secureContext = secureContext;
    this.source = request.source;
    this.destinationIdentity = request.destinationIdentity;
    this.address = address;
    this.ready = connect;
  }
}

export class HbonePool {
  readonly #secureContextFor: HbonePoolOptions['secureContextFor'];
  readonly #maxStreams: number;
  readonly #idleTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #openTimeoutMs: number;
  readonly #hbonePort: number;
  readonly #groups = new Map<string, PooledConnection[]>();
  /** Every connection not yet closed, evicted or not, so close() can wait for all of them. */
  readonly #live = new Set<HboneConnection>();
  #closed = false;

  constructor(options: HbonePoolOptions) {
    this.#secureContextFor = options.secureContextFor;
    this.#maxStreams = options.maxStreamsPerConnection ?? 100;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#openTimeoutMs = options.openTimeoutMs ?? 10_000;
    this.#hbonePort = options.hbonePort ?? HBONE_PORT;
    if (!(this.#maxStreams >= 1)) throw new RangeError(`maxStreamsPerConnection must be >= 1, got ${this.#maxStreams}`);
  }

  /** Opens a tunnel to request.target; resolves with the stream once the server answered 200. */
  async open(request: TunnelRequest): Promise<http2.ClientHttp2Stream> {
    const address = request.hboneAddress ?? { ip: request.target.ip, port: this.#hbonePort };
    const key = `${request.source}\n${request.destinationIdentity}\n${formatAuthority(address)}`;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new HboneError('POOL_CLOSED', 'HBONE pool is closed');
      const pooled = this.#acquire(key, request, address);
      try {
        const connection = await pooled.ready;
        const stream = await connection.openStream(request.target, {
          headers: request.headers,
          timeoutMs: this.#openTimeoutMs,
          signal: request.signal,
        });
        stream.once('close', () => this.#release(pooled));
        return stream;
      } catch (err) {
        this.#release(pooled);
        // Twice at most: a refused stream's retry can meet the same handover's closing listener.
        if (attempt <= 2 && handoverFailure(err)) continue;
        throw err;
      }
    }
  }

  snapshot(): PooledConnectionStatus[] {
    const result: PooledConnectionStatus[] = [];
    for (const group of this.#groups.values()) {
      for (const pooled of group) {
        result.push({
          source: pooled.source,
          destinationIdentity: pooled.destinationIdentity,
          address: formatAuthority(pooled.address),
          state: pooled.connection ? 'open' : 'connecting',
          streams: pooled.streams,
          maxStreams: this.#limit(pooled),
        });
      }
    }
    return result;
  }

  /**
   * Handover to another agent process: no new streams on the connections open now — each gets
   * GOAWAY at once and closes when its last stream ends — while the pool stays open, so that a
   * stream still to come (a connection accepted just before the listener closed) gets a new
   * connection. Resolves once the connections that were open have closed; the caller owns the
   * deadline (then close()).
   */
  async drain(): Promise<void> {
    for (const group of [...this.#groups.values()]) for (const pooled of group) this.#evict(pooled);
    const draining = [...this.#live];
    await Promise.all(
      draining.map((connection) => {
        const closed = new Promise<void>((resolve) => {
          if (connection.session.destroyed) resolve();
          else connection.session.once('close', () => resolve());
        });
        connection.close();
        return closed;
      }),
    );
  }

  /** Stops opening streams, lets open ones finish for up to graceMs, then resets what is left. */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    this.#closed = true;
    for (const group of [...this.#groups.values()]) for (const pooled of group) this.#evict(pooled);
    const closed = [...this.#live].map((connection) => {
      connection.close();
      return new Promise<void>((resolve) => {
        if (connection.session.destroyed) resolve();
        else connection.session.once('close', () => resolve());
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.graceMs ?? 5000)));
    await Promise.race([Promise.all(closed), deadline]);
    clearTimeout(timer);
    for (const connection of this.#live) connection.destroy();
    await Promise.all(closed);
  }

  #acquire(key: string, request: TunnelRequest, address: SocketAddress): PooledConnection {
    let group = this.#groups.get(key);
    const secureContext = this.#secureContextFor(request.source);
    // Connections made with another (renewed or expired) certificate take no new streams.
    for (const stale of group?.filter((pooled) => pooled.secureContext !== secureContext) ?? []) this.#evict(stale);
    group = this.#groups.get(key);
    if (!secureContext) throw new HboneError('NO_CERTIFICATE', `no certificate for ${request.source}`);
    const existing = group?.find((pooled) => pooled.streams < this.#limit(pooled));
    if (existing) {
      this.#reserve(existing);
      return existing;
    }
    const connect = HboneConnection.connect({
      address,
      secureContext,
      expectedIdentity: request.destinationIdentity,
      timeoutMs: this.#connectTimeoutMs,
    });
    const pooled = new PooledConnection(key, request, address, secureContext, connect);
    connect.then(
      (connection) => this.#connected(pooled, connection),
      () => this.#evict(pooled),
    );
    if (!group) this.#groups.set(key, (group = []));
    group.push(pooled);
    this.#reserve(pooled);
    return pooled;
  }

  #connected(pooled: PooledConnection, connection: HboneConnection): void {
    pooled.connection = connection;
    this.#live.add(connection);
    const { session } = connection;
    session.once('goaway', () => this.#evict(pooled));
    session.once('close', () => {
      this.#live.delete(connection);
      this.#evict(pooled);
    });
    if (pooled.evicted) connection.close();
  }

  #limit(pooled: PooledConnection): number {
    return Math.min(this.#maxStreams, pooled.connection?.maxConcurrentStreams ?? this.#maxStreams);
  }

  #reserve(pooled: PooledConnection): void {
    pooled.streams += 1;
    clearTimeout(pooled.idleTimer);
    pooled.idleTimer = undefined;
  }

  #release(pooled: PooledConnection): void {
    pooled.streams -= 1;
    if (pooled.streams > 0) return;
    if (pooled.evicted) {
      pooled.connection?.close();
      return;
    }
    pooled.idleTimer = setTimeout(() => {
      this.#evict(pooled);
      pooled.connection?.close();
    }, this.#idleTimeoutMs);
  }

  /** Takes the entry out of the pool: no new streams. Open streams keep the connection alive. */
  #evict(pooled: PooledConnection): void {
    clearTimeout(pooled.idleTimer);
    pooled.idleTimer = undefined;
    if (pooled.evicted) return;
    pooled.evicted = true;
    const group = this.#groups.get(pooled.key);
    if (!group) return;
    const index = group.indexOf(pooled);
    if (index >= 0) group.splice(index, 1);
    if (group.length === 0) this.#groups.delete(pooled.key);
    if (pooled.streams === 0) pooled.connection?.close();
  }
}

/**
 * Whether the stream failed before the peer agent can have connected it to its destination, in a
 * way a handover causes: refused on its connection, or its new connection reset before TLS
 * completed (ECONNRESET). A refused or timed-out connect, or a failed identity check, is not
 * retried: the next attempt would meet the same.
 */
function handoverFailure(err: unknown): boolean {
  if (!(err instanceof HboneError)) return false;
  if (err.code === 'STREAM_REFUSED') return true;
  return err.code === 'CONNECT_FAILED' && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
}
