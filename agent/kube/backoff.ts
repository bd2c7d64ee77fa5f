// Capped exponential backoff with jitter, so that every agent of a cluster that lost the API
// server at the same moment does not come back in step.
export class Backoff {
  readonly #firstMs: number;
  readonly #maxMs: number;
  #attempt = 0;

  constructor(opts: { firstMs: number; maxMs: number }) {
    this.#firstMs = opts.firstMs;
    this.#maxMs = opts.maxMs;
  }

  /** The next delay: first, 2×, 4×, … up to the cap, each ±25 %. */
  next(): number {
    const base = Math.min(this.#maxMs, this.#firstMs * 2 ** Math.min(this.#attempt++, 30));
    return Math.round(base * (0.75 + Math.random() / 2));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
