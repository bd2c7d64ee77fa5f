// The probes of one running container process, composed as the kubelet composes them: a startup
// probe first (if any); once it passes, readiness and liveness. A failed startup or liveness probe
// asks for the container to be killed; the next process gets a fresh set.
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { probeAction, runProbe, type ProbeOutcome, type ProbeTarget } from './probe-action.ts';
import { ProbeWorker, probeSettings, type ProbeType } from './prober.ts';

export interface ContainerProbesOptions {
  spec: V1Container;
  target: ProbeTarget;
  /** The runner generation (process) these probes watch. */
  generation: number;
  startedAt: number;
  /** Started, ready or a verdict changed: the pod's status may need writing. */
  onChange(): void;
  /** One failed attempt ("Unhealthy" event). */
  onFailedAttempt(type: ProbeType, outcome: ProbeOutcome): void;
  /** A startup or liveness probe failed for good: kill the container. */
  onKill(type: ProbeType, probe: V1Probe): void;
}

export class ContainerProbes {
  readonly generation: number;
  readonly #o: ContainerProbesOptions;
  #started: boolean;
  #readiness: ProbeWorker | undefined;
  #workers: ProbeWorker[] = [];
  #stopped = false;

  constructor(opts: ContainerProbesOptions) {
    this.#o = opts;
    this.generation = opts.generation;
    this.#started = !opts.spec.startupProbe;
    if (opts.spec.startupProbe) this.#add('startup', opts.spec.startupProbe);
    else this.#startMain();
  }

  /** Whether the container has started (no startup probe, or it passed). */
  get started(): boolean {
    return this.#started;
  }

  /** Started, and passing its readiness probe if it has one. */
  get ready(): boolean {
    if (!this.#started) return false;
    return this.#o.spec.readinessProbe ? (this.#readiness?.result ?? false) : true;
  }

  stop(): void {
    this.#stopped = true;
    for (const w of this.#workers) w.stop();
  }

  #startMain(): void {
    const { readinessProbe, livenessProbe } = this.#o.spec;
    if (readinessProbe) this.#readiness = this.#add('readiness', readinessProbe);
    if (livenessProbe) this.#add('liveness', livenessProbe);
  }

  #add(type: ProbeType, probe: V1Probe): ProbeWorker {
    const action = probeAction(probe, this.#o.spec, this.#o.target);
    const worker = new ProbeWorker({
      type,
      settings: probeSettings(probe),
      startedAt: this.#o.startedAt,
      attempt: (timeoutMs) => runProbe(action, timeoutMs),
      onFailedAttempt: (outcome) => this.#o.onFailedAttempt(type, outcome),
      onResult: (ok) => {
        if (this.#stopped) return;
        if (type === 'startup' && ok) {
          this.#started = true;
          this.#startMain();
        } else if (type !== 'readiness' && !ok) {
          this.#o.onKill(type, probe);
        }
        this.#o.onChange();
      },
    });
    this.#workers.push(worker);
    worker.start();
    return worker;
  }
}
