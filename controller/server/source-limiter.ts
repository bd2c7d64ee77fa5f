// Per-source limits of the agent API, checked before a TokenReview is sent: any pod can reach
// port 15012, and every distinct token it sends would otherwise cost the API server a review.
//
// A source is a peer IP address. Three limits, each refusing at once rather than queueing:
//   - a token bucket of reviews (requests whose token is not already known), so that a source
//     cannot turn a stream of distinct tokens into a stream of reviews;
//   - a cap on its requests waiting for a review at the same time;
//   - a cap on its connections that have not authenticated yet (checked before the TLS
//     handshake), plus one cap on such connections from everywhere.
// Agents that already proved themselves are not counted: a request with a token the controller
// already accepted, or on a connection that authenticated, never reaches this file, and a
// connection stops counting as soon as it authenticates. So a flood from the address of a node
// (a host-network pod beside the agent) can delay that agent's *new* connections, never its
// established ones.
//
// Memory is bounded: buckets live in an LRU of `maxSources`; the counters hold an entry only
// while it is non-zero, and are bounded by the caps themselves.
import { BoundedLru } from './bounded-lru.ts';

export interface SourceLimits {
  /** Reviews a source may cause per second, sustained. */
  reviewRatePerSecond: number;
  /** Reviews a source may cause at once after being quiet. */
  reviewBurst: number;
  /** Requests of one source waiting for a review at the same time. */
  pendingReviewsPerSource: number;
  /** Connections of one source that have not authenticated yet. */
  connectionsPerSource: number;
  /** Connections from all sources that have not authenticated yet. */
  maxConnections: number;
  /** Sources whose bucket is remembered (LRU). */
  maxSources: number;
}

export const DEFAULT_SOURCE_LIMITS: SourceLimits = {
  reviewRatePerSecond: 2,
  reviewBurst: 20,
  pendingReviewsPerSource: 4,
  connectionsPerSource: 16,
  maxConnections: 1024,
  maxSources: 10_000,
};

export type SourceRefusalReason = 'source_rate' | 'source_pending' | 'source_connections' | 'connections';

export type Admission<T> = { admitted: true; ticket: T } | { admitted: false; reason: SourceRefusalReason; retryAfterSeconds: number };

export interface ReviewTicket {
  /** The review finished (either way): the source may have another one waiting. */
  release(): void;
}

export interface ConnectionTicket {
  /** The connection authenticated an agent: it no longer counts against the caps. */
  authenticated(): void;
  /** The connection closed. */
  release(): void;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class SourceLimiter {
  readonly limits: SourceLimits;
  readonly #now: () => number;
  readonly #buckets: BoundedLru<string, Bucket>;
  readonly #pending = new Map<string, number>();
  readonly #connections = new Map<string, number>();
  #totalConnections = 0;

  constructor(limits: Partial<SourceLimits> = {}, now: () => number = () => performance.now()) {
    this.limits = { ...DEFAULT_SOURCE_LIMITS, ...limits };
    this.#now = now;
    this.#buckets = new BoundedLru(this.limits.maxSources);
  }

  /** A request from `source` needs a review: may it have one now? */
  admitReview(source: string): Admission<ReviewTicket> {
    const pending = this.#pending.get(source) ?? 0;
    if (pending >= this.limits.pendingReviewsPerSource) return { admitted: false, reason: 'source_pending', retryAfterSeconds: 1 };
    const bucket = this.#refill(source);
    if (bucket.tokens < 1) {
      const wait = (1 - bucket.tokens) / this.limits.reviewRatePerSecond;
      return { admitted: false, reason: 'source_rate', retryAfterSeconds: Math.max(1, Math.ceil(wait)) };
    }
    bucket.tokens -= 1;
    this.#pending.set(source, pending + 1);
    let held = true;
    return {
      admitted: true,
      ticket: {
        release: () => {
          if (!held) return;
          held = false;
          decrement(this.#pending, source);
        },
      },
    };
  }

  /** A new connection from `source`, before its TLS handshake. */
  admitConnection(source: string): Admission<ConnectionTicket> {
    if (this.#totalConnections >= this.limits.maxConnections) return { admitted: false, reason: 'connections', retryAfterSeconds: 1 };
    const n = this.#connections.get(source) ?? 0;
    if (n >= this.limits.connectionsPerSource) return { admitted: false, reason: 'source_connections', retryAfterSeconds: 1 };
    this.#connections.set(source, n + 1);
    this.#totalConnections++;
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      this.#totalConnections--;
      decrement(this.#connections, source);
    };
    return { admitted: true, ticket: { authenticated: uncount, release: uncount } };
  }

  /** For metrics and tests. */
  get counts(): { sources: number; pendingReviews: number; unauthenticatedConnections: number } {
    let pendingReviews = 0;
    for (const n of this.#pending.values()) pendingReviews += n;
    return { sources: this.#buckets.size, pendingReviews, unauthenticatedConnections: this.#totalConnections };
  }

  #refill(source: string): Bucket {
    const now = this.#now();
    const { reviewBurst: burst, reviewRatePerSecond: rate } = this.limits;
    const b = this.#buckets.get(source);
    if (!b) {
      const fresh = { tokens: burst, at: now };
      this.#buckets.set(source, fresh);
      return fresh;
    }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    return b;
  }
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 0) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** The address a limit is kept for: IPv4 peers on a dual-stack socket appear as ::ffff:a.b.c.d. */
export function sourceOf(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.') ? remoteAddress.slice(7) : remoteAddress;
}
