// Two kinds of waiting: the kubelet's crash-loop back-off for restarting containers, and a plain
// exponential retry for operations that failed (sandbox creation, CNI DEL, API writes).

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A container that ran this long between failures starts over at initialMs. */
  resetAfterMs: number;
}

/** The kubelet's values: 10 s doubling to 5 min, forgotten after 10 min (2 × max) without a failure. */
export const CRASH_LOOP_BACKOFF: BackoffPolicy = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };

/**
 * The kubelet's per-container back-off (k8s.io/client-go/util/flowcontrol.Backoff as the kubelet
 * uses it): the first restart is immediate; each later one waits the current back-off counted from
 * the moment the container finished, and the back-off doubles with each restart.
 */
export class RestartBackoff {
  readonly #policy: BackoffPolicy;
  #backoffMs = 0;
  #lastFinish: number | undefined;

  constructor(policy: BackoffPolicy = CRASH_LOOP_BACKOFF) {
    this.#policy = policy;
  }

  /** How long to wait, from `now`, before restarting a container that finished at `finishedAt`. */
  delay(finishedAt: number, now: number): number {
    if (this.#expired(finishedAt)) return 0;
    return Math.max(0, finishedAt + this.#backoffMs - now);
  }

  /** Records a restart after the exit at `finishedAt`. */
  recordRestart(finishedAt: number): void {
    this.#backoffMs = this.#expired(finishedAt) ? this.#policy.initialMs : Math.min(this.#backoffMs * 2, this.#policy.maxMs);
    this.#lastFinish = finishedAt;
  }

  /** The current back-off, as the kubelet names it in "back-off 20s restarting failed container". */
  currentMs(): number {
    return this.#backoffMs;
  }

  #expired(finishedAt: number): boolean {
    return this.#lastFinish === undefined || finishedAt - this.#lastFinish > this.#policy.resetAfterMs;
  }
}

/** Plain exponential back-off for retrying a failed operation. */
export class RetryBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #nextMs: number;

  constructor(initialMs = 1000, maxMs = 60_000) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#nextMs = initialMs;
  }

  next(): number {
    const d = this.#nextMs;
    this.#nextMs = Math.min(this.#nextMs * 2, this.#maxMs);
    return d;
  }

  reset(): void {
    this.#nextMs = this.#initialMs;
  }
}

/** "10s", "2m40s": durations the way Go prints them in kubelet messages. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return s % 60 === 0 ? `${m}m0s` : `${m}m${s % 60}s`;
}
