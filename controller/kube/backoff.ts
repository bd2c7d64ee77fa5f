// Exponential back-off with full jitter, for restarting watches and retrying API calls: many
// controllers (and replicas) losing the API server at once must not come back in lock-step.

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** Replaced in tests to make delays predictable. */
  random?: () => number;
}

export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(opts: BackoffOptions = {}) {
    this.#initialMs = opts.initialMs ?? 500;
    this.#maxMs = opts.maxMs ?? 30_000;
    this.#random = opts.random ?? Math.random;
  }

  /** The next delay: uniformly in [cap/2, cap], where cap doubles per attempt up to maxMs. */
  next(): number {
    const cap = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return Math.round(cap / 2 + (this.#random() * cap) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }

  get attempts(): number {
    return this.#attempt;
  }
}
