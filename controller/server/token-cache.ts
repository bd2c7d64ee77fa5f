// What the API server said about each token, so that it is asked once per token rather than once
// per request. Keys are SHA-256 digests of tokens: a token is never stored, and never logged.
//
// Accepted tokens are remembered until the token's own expiry (its JWT `exp`, read only to size
// the lifetime) but never longer than `maxTtlMs`, because a bound token is also revoked early when
// its pod or node is deleted and the API server is the only one who knows. Refusals are remembered
// briefly. The two live in separate tables: a flood of bogus tokens fills the refusal table and
// evicts refusals, never the identities of agents that already proved themselves.
import { createHash } from 'node:crypto';
import { BoundedLru } from './bounded-lru.ts';
import { jwtExpiry } from './jwt-expiry.ts';

export interface TokenCacheOptions {
  /** Longest an accepted token is trusted without asking again, whatever its `exp` says. */
  maxTtlMs: number;
  /** How long a refused token stays refused. */
  negativeTtlMs: number;
  /** Entries per table (accepted, refused). */
  maxEntries: number;
  now: () => number;
}

interface Entry<V> {
  expires: number;
  value: V;
}

// An `exp` that is about to pass is not worth a cache entry: the next request would find it stale.
const MIN_USEFUL_TTL_MS = 1_000;

export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export class TokenCache<A, R> {
  readonly #o: TokenCacheOptions;
  readonly #accepted: BoundedLru<string, Entry<A>>;
  readonly #refused: BoundedLru<string, Entry<R>>;

  constructor(opts: TokenCacheOptions) {
    this.#o = opts;
    this.#accepted = new BoundedLru(opts.maxEntries);
    this.#refused = new BoundedLru(opts.maxEntries);
  }

  /** The identity of an accepted token that is still fresh. */
  accepted(key: string): A | undefined {
    return this.#fresh(this.#accepted, key);
  }

  /** The refusal of a token refused a moment ago. */
  refused(key: string): R | undefined {
    return this.#fresh(this.#refused, key);
  }

  accept(key: string, token: string, identity: A): void {
    const now = this.#o.now();
    const exp = jwtExpiry(token);
    const ttl = Math.min(this.#o.maxTtlMs, exp === undefined ? this.#o.maxTtlMs : exp - now);
    this.#refused.delete(key);
    if (ttl < MIN_USEFUL_TTL_MS) return;
    this.#accepted.set(key, { expires: now + ttl, value: identity });
  }

  refuse(key: string, refusal: R): void {
    this.#accepted.delete(key);
    if (this.#o.negativeTtlMs <= 0) return;
    this.#refused.set(key, { expires: this.#o.now() + this.#o.negativeTtlMs, value: refusal });
  }

  get size(): { accepted: number; refused: number } {
    return { accepted: this.#accepted.size, refused: this.#refused.size };
  }

  #fresh<V>(table: BoundedLru<string, Entry<V>>, key: string): V | undefined {
    const e = table.get(key);
    if (!e) return undefined;
    if (e.expires > this.#o.now()) return e.value;
    table.delete(key);
    return undefined;
  }
}
