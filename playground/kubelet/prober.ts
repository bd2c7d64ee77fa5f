// A probe worker per (container, probe type), with the kubelet's semantics: probe every period
// after the initial delay, change the result only after successThreshold successes or
// failureThreshold failures in a row, and stop once a liveness or startup probe has failed for good
// (the container is about to be killed; the next container gets new workers).
import type { V1Probe } from '@kubernetes/client-node';
import type { ProbeOutcome } from './probe-action.ts';

export type ProbeType = 'readiness' | 'liveness' | 'startup';

export interface ProbeSettings {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

/** The spec's fields with the API's defaults (period 10 s, timeout 1 s, thresholds 1 and 3). */
export function probeSettings(p: V1Probe): ProbeSettings {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds || 10) * 1000,
    timeoutMs: (p.timeoutSeconds || 1) * 1000,
    successThreshold: p.successThreshold || 1,
    failureThreshold: p.failureThreshold || 3,
  };
}

export interface ProbeWorkerOptions {
  type: ProbeType;
  settings: ProbeSettings;
  /** One attempt; must honour the timeout it is given. */
  attempt(timeoutMs: number): Promise<ProbeOutcome>;
  /** When the probed container started (the initial delay counts from here). */
  startedAt: number;
  /** The result changed (true = success). */
  onResult(ok: boolean, outcome: ProbeOutcome): void;
  /** Every failed attempt, for the kubelet's "Unhealthy" events. */
  onFailedAttempt?(outcome: ProbeOutcome): void;
}

export class ProbeWorker {
  readonly type: ProbeType;
  readonly #o: ProbeWorkerOptions;
  // Before any probe: readiness starts as failed, liveness as passed, startup as unknown.
  #result: boolean | undefined;
  #lastAttempt: boolean | undefined;
  #run = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: ProbeWorkerOptions) {
    this.type = opts.type;
    this.#o = opts;
    this.#result = opts.type === 'readiness' ? false : opts.type === 'liveness' ? true : undefined;
  }

  /** Whether the probe currently passes. */
  get result(): boolean {
    return this.#result === true;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  start(): void {
    const first = Math.max(0, this.#o.startedAt + this.#o.settings.initialDelayMs - Date.now());
    this.#schedule(first);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
  }

  async #tick(): Promise<void> {
    const began = Date.now();
    const { settings } = this.#o;
    let outcome: ProbeOutcome;
    try {
      outcome = await this.#o.attempt(settings.timeoutMs);
    } catch (err) {
      outcome = { ok: false, message: (err as Error).message };
    }
    if (this.#stopped) return;
    if (!outcome.ok) this.#o.onFailedAttempt?.(outcome);

    this.#run = this.#lastAttempt === outcome.ok ? this.#run + 1 : 1;
    this.#lastAttempt = outcome.ok;
    const threshold = outcome.ok ? settings.successThreshold : settings.failureThreshold;
    if (this.#run >= threshold && this.#result !== outcome.ok) {
      this.#result = outcome.ok;
      this.#o.onResult(outcome.ok, outcome);
    }
    // A failed liveness or startup probe means the container gets killed: nothing left to probe.
    // A passed startup probe has done its job too.
    const settled = this.#run >= threshold && (this.#o.type === 'startup' || (this.#o.type === 'liveness' && !outcome.ok));
    if (settled) {
      this.stop();
      return;
    }
    this.#schedule(Math.max(0, began + settings.periodMs - Date.now()));
  }
}
