// Who is calling: an agent proves itself with its service-account token, which the API server
// checks for us (TokenReview). The node an agent speaks for is the node its token is bound to
// (`authentication.kubernetes.io/node-name`, present for tokens bound to a Node, or to a Pod on a
// node), never what it claims.
//
// Any pod can reach the agent API, so a review is the last step, and the cheapest checks come
// first (controller/README.md, "Hostile callers"):
//   1. a token the API server accepted earlier is answered from memory (token-cache.ts, keyed by
//      SHA-256; the token itself is never stored or logged), with no limit at all: agents that
//      already proved themselves never wait behind strangers;
//   2. a token refused a moment ago is refused again from memory;
//   3. a request for the same token as one already under review joins it;
//   4. otherwise the source must have room for a review (source-limiter.ts: token bucket and
//      pending cap), unless its connection already authenticated an agent (a token rotation);
//   5. and the review waits for one of a fixed number of slots (review-gate.ts).
// Refusals at 4 and 5 are 429 RATE_LIMITED with retry-after, before anything reaches the API server.
import { AgentApiError } from './errors.ts';
import type { ReviewGate } from './review-gate.ts';
import { ReviewGateError } from './review-gate.ts';
import type { SourceLimiter, SourceRefusalReason } from './source-limiter.ts';
import { TokenCache, tokenKey } from './token-cache.ts';

/** What a TokenReview answered, reduced to what authentication needs. */
export interface TokenReviewResult {
  authenticated: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  /** The API server's reason when not authenticated. */
  error?: string;
}

/** Asks the API server about a token. Throws when it cannot answer (network, 5xx, RBAC). */
export interface TokenReviewer {
  review(token: string): Promise<TokenReviewResult>;
}

export interface AgentIdentity {
  /** The node the token is bound to: the only node this agent may speak for. */
  node: string;
  /** `system:serviceaccount:<ns>:<name>` */
  username: string;
  /** Set when the token is bound to the agent's pod. */
  pod?: string;
}

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';

export interface AgentAuthOptions {
  reviewer: TokenReviewer;
  /** The agents' service account; weft-system/weft-agent by default. */
  serviceAccount?: { namespace: string; name: string };
  /** Longest an accepted token is trusted without asking again; its own expiry comes first. */
  ttlMs?: number;
  /** How long a refused token stays refused without asking again. */
  negativeTtlMs?: number;
  /** Entries in each of the accepted and refused tables. */
  maxEntries?: number;
  /** Per-source limits; none when omitted (unit tests of the review rules). */
  limiter?: SourceLimiter;
  /** The global cap on reviews in flight; none when omitted. */
  gate?: ReviewGate;
  now?: () => number;
}

/** Who is asking, for the limits. */
export interface AuthContext {
  /** The peer's address (source-limiter.ts sourceOf). */
  source: string;
  /** The connection already authenticated an agent: skip the per-source limits, use the priority lane. */
  trusted?: boolean;
}

export type ReviewOutcome = 'accepted' | 'refused' | 'failed';
export type CacheResult = 'accepted' | 'refused' | 'miss';
export type LimitReason = SourceRefusalReason | 'review_queue_full' | 'review_queue_timeout';

export const DEFAULT_TOKEN_TTL_MS = 5 * 60_000;
export const DEFAULT_NEGATIVE_TTL_MS = 5_000;

// A projected service-account token is about 1 KiB; anything far larger is not a token.
const MAX_TOKEN_BYTES = 16 * 1024;

export class AgentAuthenticator {
  readonly #reviewer: TokenReviewer;
  readonly #username: string;
  readonly #cache: TokenCache<AgentIdentity, AgentApiError>;
  readonly #limiter: SourceLimiter | undefined;
  readonly #gate: ReviewGate | undefined;
  // Bounded by the limits: an entry exists only while its review is admitted and unfinished.
  readonly #inflight = new Map<string, Promise<AgentIdentity>>();
  /** Called once per review actually sent to the API server (for a metric). */
  onReview: ((outcome: ReviewOutcome) => void) | undefined;
  /** Called for each request that got as far as the cache. */
  onCache: ((result: CacheResult) => void) | undefined;
  /** Called for each request refused by a limit before any review. */
  onLimited: ((reason: LimitReason) => void) | undefined;

  constructor(opts: AgentAuthOptions) {
    const sa = opts.serviceAccount ?? { namespace: 'weft-system', name: 'weft-agent' };
    this.#reviewer = opts.reviewer;
    this.#username = `system:serviceaccount:${sa.namespace}:${sa.name}`;
    this.#cache = new TokenCache({
      maxTtlMs: opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS,
      negativeTtlMs: opts.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS,
      maxEntries: opts.maxEntries ?? 10_000,
      now: opts.now ?? Date.now,
    });
    this.#limiter = opts.limiter;
    this.#gate = opts.gate;
  }

  /** Entries held (for metrics and tests). */
  get cached(): { accepted: number; refused: number } {
    return this.#cache.size;
  }

  /** The agent behind an `authorization` header, or an AgentApiError (401, 403, 429, 503). */
  async authenticate(authorization: string | undefined, ctx: AuthContext = { source: 'unknown' }): Promise<AgentIdentity> {
    const token = bearerToken(authorization);
    const key = tokenKey(token);
    const known = this.#cache.accepted(key);
    if (known) {
      this.onCache?.('accepted');
      return known;
    }
    const refused = this.#cache.refused(key);
    if (refused) {
      this.onCache?.('refused');
      throw refused;
    }
    this.onCache?.('miss');
    const pending = this.#inflight.get(key);
    if (pending) return pending;

    let release: (() => void) | undefined;
    if (this.#limiter && !ctx.trusted) {
      const admission = this.#limiter.admitReview(ctx.source);
      if (!admission.admitted) {
        this.onLimited?.(admission.reason);
        throw new AgentApiError('RATE_LIMITED', LIMIT_MESSAGES[admission.reason], { retryAfterSeconds: admission.retryAfterSeconds });
      }
      release = () => admission.ticket.release();
    }
    const review = (): Promise<AgentIdentity> => this.#review(key, token);
    const running = (this.#gate ? this.#gate.run(review, ctx.trusted === true) : review())
      .catch((err: unknown) => {
        if (!(err instanceof ReviewGateError)) throw err;
        const reason = err.code === 'REVIEW_QUEUE_FULL' ? 'review_queue_full' : 'review_queue_timeout';
        this.onLimited?.(reason);
        throw new AgentApiError('RATE_LIMITED', `the controller is busy reviewing other tokens (${err.message}); retry`, { retryAfterSeconds: 1 });
      })
      .finally(() => {
        release?.();
        this.#inflight.delete(key);
      });
    this.#inflight.set(key, running);
    return running;
  }

  async #review(key: string, token: string): Promise<AgentIdentity> {
    let result: TokenReviewResult;
    try {
      result = await this.#reviewer.review(token);
    } catch (err) {
      // Not the agent's fault and not cached: the next attempt asks again.
      this.onReview?.('failed');
      throw new AgentApiError('NOT_READY', `cannot review the token now: ${(err as Error).message}`, { cause: err });
    }
    let identity: AgentIdentity;
    try {
      identity = this.#judge(result);
    } catch (err) {
      const refusal = err as AgentApiError;
      this.onReview?.('refused');
      this.#cache.refuse(key, refusal);
      throw refusal;
    }
    this.onReview?.('accepted');
    this.#cache.accept(key, token, identity);
    return identity;
  }

  #judge(result: TokenReviewResult): AgentIdentity {
    if (!result.authenticated) {
      throw new AgentApiError('UNAUTHENTICATED', `token rejected by the API server${result.error ? `: ${result.error}` : ''}`);
    }
    const username = result.user?.username ?? '';
    if (username !== this.#username) {
      throw new AgentApiError('FORBIDDEN', `only ${this.#username} may use the agent API, not ${username || 'an anonymous user'}`);
    }
    const node = result.user?.extra?.[NODE_NAME_EXTRA]?.[0];
    if (!node) {
      throw new AgentApiError('FORBIDDEN', 'the token is not bound to a node: request it bound to the Node (or to the agent pod on it)');
    }
    const pod = result.user?.extra?.[POD_NAME_EXTRA]?.[0];
    return { node, username, ...(pod ? { pod } : {}) };
  }
}

const LIMIT_MESSAGES: Record<SourceRefusalReason, string> = {
  source_rate: 'too many unknown tokens from this address; retry later',
  source_pending: 'too many requests from this address are already waiting for a token review',
  source_connections: 'too many unauthenticated connections from this address',
  connections: 'too many unauthenticated connections',
};

function bearerToken(authorization: string | undefined): string {
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization ?? '');
  if (!match) throw new AgentApiError('UNAUTHENTICATED', 'missing "authorization: Bearer <service-account token>"');
  const token = match[1] as string;
  if (token.length > MAX_TOKEN_BYTES) throw new AgentApiError('UNAUTHENTICATED', 'bearer token is implausibly long');
  return token;
}
