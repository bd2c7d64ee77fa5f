// Who is calling: an agent proves itself with its service-account token, which the API server
// checks for us (TokenReview). The node an agent speaks for is the node its token is bound to
// (`authentication.kubernetes.io/node-name`, present for tokens bound to a Node, or to a Pod on a
// node), never what it claims.
//
// Reviews are cached for a short time, keyed by a SHA-256 of the token, so that a fleet of agents
// reconnecting at once costs one review per agent, not one per request; the token itself is never
// stored or logged. A revoked token keeps working for at most the cache lifetime.
import { createHash } from 'node:crypto';
import { AgentApiError } from './errors.ts';

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
  /** How long an accepted token is trusted without asking again. */
  ttlMs?: number;
  /** How long a refused token stays refused without asking again. */
  negativeTtlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

export type ReviewOutcome = 'accepted' | 'refused' | 'failed';

interface CacheEntry {
  expires: number;
  outcome: AgentIdentity | AgentApiError;
}

// A projected service-account token is about 1 KiB; anything far larger is not a token.
const MAX_TOKEN_BYTES = 16 * 1024;

export class AgentAuthenticator {
  readonly #reviewer: TokenReviewer;
  readonly #username: string;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<AgentIdentity>>();
  /** Called once per review actually sent to the API server (for a metric). */
  onReview: ((outcome: ReviewOutcome) => void) | undefined;

  constructor(opts: AgentAuthOptions) {
    const sa = opts.serviceAccount ?? { namespace: 'weft-system', name: 'weft-agent' };
    this.#reviewer = opts.reviewer;
    this.#username = `system:serviceaccount:${sa.namespace}:${sa.name}`;
    this.#ttlMs = opts.ttlMs ?? 30_000;
    this.#negativeTtlMs = opts.negativeTtlMs ?? 5_000;
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  /** The agent behind an `authorization` header, or an AgentApiError (401, 403, 503). */
  async authenticate(authorization: string | undefined): Promise<AgentIdentity> {
    const token = bearerToken(authorization);
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.#cache.get(key);
    if (cached && cached.expires > this.#now()) {
      if (cached.outcome instanceof AgentApiError) throw cached.outcome;
      return cached.outcome;
    }
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#review(key, token).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
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
    let outcome: AgentIdentity | AgentApiError;
    try {
      outcome = this.#judge(result);
    } catch (err) {
      outcome = err as AgentApiError;
    }
    this.onReview?.(outcome instanceof AgentApiError ? 'refused' : 'accepted');
    this.#remember(key, outcome);
    if (outcome instanceof AgentApiError) throw outcome;
    return outcome;
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

  #remember(key: string, outcome: AgentIdentity | AgentApiError): void {
    const ttl = outcome instanceof AgentApiError ? this.#negativeTtlMs : this.#ttlMs;
    if (ttl <= 0) return;
    this.#cache.delete(key);
    this.#cache.set(key, { expires: this.#now() + ttl, outcome });
    // Map iteration is insertion order: the first entries are the oldest.
    for (const k of this.#cache.keys()) {
      if (this.#cache.size <= this.#maxEntries) break;
      this.#cache.delete(k);
    }
  }
}

function bearerToken(authorization: string | undefined): string {
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization ?? '');
  if (!match) throw new AgentApiError('UNAUTHENTICATED', 'missing "authorization: Bearer <service-account token>"');
  const token = match[1] as string;
  if (token.length > MAX_TOKEN_BYTES) throw new AgentApiError('UNAUTHENTICATED', 'bearer token is implausibly long');
  return token;
}
