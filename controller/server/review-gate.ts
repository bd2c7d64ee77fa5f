// One cap on the TokenReviews this controller has in flight at once, whoever asked: the per-source
// limits (source-limiter.ts) stop one source, this stops many sources together from turning the
// controller into a load generator against its own API server.
//
// Reviews beyond the cap wait in a bounded queue for a bounded time, and are refused once either
// runs out, so that a caller hears "busy, retry" within `maxWaitMs` instead of hanging behind a
// flood. Priority reviews (a connection that already authenticated an agent is presenting a new
// token: a rotation) have their own budget of the same size and a queue served first, so that a
// flood of strangers cannot hold up agents the controller already knows.
import { CodedError } from '../../api/coded-error.ts';

export class ReviewGateError extends CodedError<'REVIEW_QUEUE_FULL' | 'REVIEW_QUEUE_TIMEOUT'> {
  override readonly name = 'ReviewGateError';
}

export interface ReviewGateOptions {
  /** Reviews in flight at once (and, separately, priority reviews). */
  concurrency: number;
  /** Reviews waiting for a slot (each class). */
  queue: number;
  /** Longest a review waits for a slot. */
  maxWaitMs: number;
}

export const DEFAULT_REVIEW_GATE: ReviewGateOptions = { concurrency: 16, queue: 64, maxWaitMs: 2_000 };

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

class Lane {
  inFlight = 0;
  readonly waiting: Waiter[] = [];
}

export class ReviewGate {
  readonly options: ReviewGateOptions;
  readonly #normal = new Lane();
  readonly #priority = new Lane();

  constructor(opts: Partial<ReviewGateOptions> = {}) {
    this.options = { ...DEFAULT_REVIEW_GATE, ...opts };
  }

  get inFlight(): number {
    return this.#normal.inFlight + this.#priority.inFlight;
  }

  get queued(): number {
    return this.#normal.waiting.length + this.#priority.waiting.length;
  }

  /** Runs `review` once a slot is free; rejects with ReviewGateError when none frees in time. */
  async run<T>(review: () => Promise<T>, priority = false): Promise<T> {
    const lane = priority ? this.#priority : this.#normal;
    if (lane.inFlight >= this.options.concurrency) await this.#wait(lane);
    else lane.inFlight++;
    try {
      return await review();
    } finally {
      this.#handOver(lane);
    }
  }

  // The slot passes straight to the next waiter, so inFlight never dips and a newcomer cannot
  // overtake the queue.
  #handOver(lane: Lane): void {
    const next = lane.waiting.shift();
    if (!next) {
      lane.inFlight--;
      return;
    }
    clearTimeout(next.timer);
    next.start();
  }

  #wait(lane: Lane): Promise<void> {
    if (lane.waiting.length >= this.options.queue) {
      return Promise.reject(new ReviewGateError('REVIEW_QUEUE_FULL', `${this.options.queue} token reviews are already waiting`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: resolve,
        timer: setTimeout(() => {
          const i = lane.waiting.indexOf(waiter);
          if (i !== -1) lane.waiting.splice(i, 1);
          reject(new ReviewGateError('REVIEW_QUEUE_TIMEOUT', `no token review slot within ${this.options.maxWaitMs} ms`));
        }, this.options.maxWaitMs),
      };
      lane.waiting.push(waiter);
    });
  }
}
