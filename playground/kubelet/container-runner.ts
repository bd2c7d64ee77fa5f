// One container's life: start its process, notice its exit, and restart it as the pod's restart
// policy says with the kubelet's crash-loop back-off, until told to stop. It knows nothing of the
// API: the pod worker reads snapshots and turns them into containerStatuses.
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { CRASH_LOOP_BACKOFF, RestartBackoff, formatDuration, type BackoffPolicy } from './backoff.ts';
import { errorMessage } from './errors.ts';
import type { EventType } from './events.ts';
import { silentLogger, type Logger } from '../../api/log.ts';
import type { ProcessRecord } from './pod-state-store.ts';
import { adoptProcess, resolveExecutable, startProcess, type ContainerProcess, type ExitStatus } from './process.ts';

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export interface Terminated {
  exitCode: number;
  reason: string;
  message?: string;
  startedAt: Date;
  finishedAt: Date;
  containerID: string;
}

export type ContainerState =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: Date; containerID: string }
  | ({ kind: 'terminated' } & Terminated);

export interface ContainerSnapshot {
  state: ContainerState;
  /** The previous run, once there was one (status.containerStatuses[].lastState). */
  lastState: Terminated | undefined;
  restartCount: number;
  /** True once the container will never run again (policy said no, or it was stopped). */
  finished: boolean;
  /** Increases with every process started; probes restart from scratch when it changes. */
  generation: number;
}

export interface ContainerLaunch {
  /** command + args, already expanded; argv[0] is looked up in env.PATH. */
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** The pod's network namespace, or null for hostNetwork. */
  netnsPath: string | null;
}

export interface ContainerRunnerOptions {
  name: string;
  /** How messages name the pod: "name_namespace(uid)", as the kubelet does. */
  podLabel: string;
  restartPolicy: RestartPolicy;
  launch: ContainerLaunch;
  logPath(restartCount: number): string;
  backoff?: BackoffPolicy;
  /** Restarts counted before this runner existed (from the API, after a kubelet restart). */
  initialRestartCount?: number;
  /** A process an earlier kubelet started for this container: adopted if it still runs. */
  adopt?: ProcessRecord;
  /**
   * How the container last ended, if it ran before this runner existed (from the API after a
   * kubelet restart): the restart policy is applied to that exit instead of starting afresh, so a
   * completed container is not run twice.
   */
  previousExit?: Terminated;
  /** Called whenever snapshot() would return something different. */
  onChange(): void;
  /** Called when a process starts, so that it can be recorded for a future kubelet to adopt. */
  onStarted?(rec: ProcessRecord): void;
  onEvent?(type: EventType, reason: string, message: string): void;
  log?: Logger;
}

export function shouldRestart(policy: RestartPolicy, exitCode: number): boolean {
  return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
}

export class ContainerRunner {
  readonly name: string;
  readonly #o: ContainerRunnerOptions;
  readonly #log: Logger;
  readonly #backoff: RestartBackoff;
  #state: ContainerState = { kind: 'waiting', reason: 'ContainerCreating' };
  #last: Terminated | undefined;
  #restartCount: number;
  #generation = 0;
  #proc: ContainerProcess | undefined;
  #launching: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #began = false;
  #stopping = false;
  #finished = false;

  constructor(opts: ContainerRunnerOptions) {
    this.name = opts.name;
    this.#o = opts;
    this.#log = (opts.log ?? silentLogger).child({ container: opts.name });
    this.#backoff = new RestartBackoff(opts.backoff ?? CRASH_LOOP_BACKOFF);
    this.#restartCount = Math.max(opts.initialRestartCount ?? 0, opts.adopt?.restartCount ?? 0);
  }

  /** Starts the container (or adopts its running process); calling it again does nothing. */
  start(): void {
    if (this.#began || this.#stopping) return;
    this.#began = true;
    const a = this.#o.adopt;
    if (a) {
      const proc = adoptProcess(a.pid, a.startTicks, new Date(a.startedAt));
      if (proc) {
        this.#log.info('adopted running container process', { pid: a.pid });
        this.#attach(proc, a.containerID);
        return;
      }
    }
    if (this.#o.previousExit) return this.#afterExit(this.#o.previousExit);
    this.#launching = this.#launch();
  }

  snapshot(): ContainerSnapshot {
    return {
      state: this.#state,
      lastState: this.#last,
      restartCount: this.#restartCount,
      finished: this.#finished,
      generation: this.#generation,
    };
  }

  /**
   * Kills the running process (a failed liveness or startup probe); the restart policy then
   * decides, exactly as if it had exited by itself.
   */
  async kill(graceMs: number): Promise<void> {
    await this.#launching;
    await this.#terminate(graceMs);
  }

  /** Stops the container for good: SIGTERM, SIGKILL after graceMs, no restart. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#timer) {
      // Waiting out a back-off: it will not run again, so its last run is its final state.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      if (this.#last) this.#state = { kind: 'terminated', ...this.#last };
    }
    await this.#launching;
    await this.#terminate(graceMs);
    if (!this.#finished) {
      this.#finished = true;
      this.#o.onChange();
    }
  }

  async #terminate(graceMs: number): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    proc.signal('SIGTERM');
    const escalate = setTimeout(() => proc.signal('SIGKILL'), graceMs);
    await proc.exited;
    clearTimeout(escalate);
    // #onExit ran first (it was registered on `exited` when the process was attached).
  }

  async #launch(): Promise<void> {
    const restartCount = this.#restartCount;
    const containerID = `weft://${randomBytes(32).toString('hex')}`;
    const { argv, env, cwd, netnsPath } = this.#o.launch;
    const [cmd, ...args] = argv;
    try {
      if (!cmd) return this.#startFailed(containerID, 'no command specified');
      if (cwd !== undefined && !isDirectory(cwd)) {
        return this.#startFailed(containerID, `chdir to cwd ("${cwd}") set in config.json failed: no such file or directory`);
      }
      const exe = await resolveExecutable(cmd, env.PATH, cwd);
      if (!exe) return this.#startFailed(containerID, `exec: "${cmd}": executable file not found in $PATH`);
      if (this.#stopping) return;
      const logPath = this.#o.logPath(restartCount);
      const proc = await startProcess({ argv: [exe, ...args], env, netnsPath, logPath, ...(cwd !== undefined ? { cwd } : {}) });
      // The kubelet keeps the current and the previous log (kubectl logs --previous).
      if (restartCount >= 2) await rm(this.#o.logPath(restartCount - 2), { force: true });
      this.#attach(proc, containerID);
      if (this.#stopping) proc.signal('SIGKILL');
      this.#log.info('container started', { pid: proc.pid, restartCount });
      this.#o.onStarted?.({
        pid: proc.pid,
        startTicks: proc.startTicks,
        containerID,
        startedAt: proc.startedAt.toISOString(),
        restartCount,
      });
      this.#o.onEvent?.('Normal', 'Started', `Started container ${this.name}`);
    } catch (err) {
      this.#startFailed(containerID, errorMessage(err));
    }
  }

  #attach(proc: ContainerProcess, containerID: string): void {
    this.#proc = proc;
    this.#generation++;
    this.#state = { kind: 'running', startedAt: proc.startedAt, containerID };
    this.#o.onChange();
    void proc.exited.then((st) => this.#onExit(proc, containerID, st));
  }

  #onExit(proc: ContainerProcess, containerID: string, st: ExitStatus): void {
    if (this.#proc === proc) this.#proc = undefined;
    const term: Terminated = {
      exitCode: st.exitCode,
      reason: !st.known ? 'Unknown' : st.exitCode === 0 ? 'Completed' : 'Error',
      ...(!st.known ? { message: 'the container exited while no kubelet was watching it: its exit code is unknown' } : {}),
      startedAt: proc.startedAt,
      finishedAt: st.finishedAt,
      containerID,
    };
    this.#log.info('container exited', { exitCode: term.exitCode, signal: st.signal, reason: term.reason });
    this.#afterExit(term);
  }

  // Like a runtime whose create or start failed: a terminated container with exit code 128.
  #startFailed(containerID: string, message: string): void {
    const now = new Date();
    this.#log.warn('container could not start', { message });
    this.#o.onEvent?.('Warning', 'Failed', `Error: ${message}`);
    this.#afterExit({ exitCode: 128, reason: 'StartError', message, startedAt: now, finishedAt: now, containerID });
  }

  #afterExit(term: Terminated): void {
    this.#state = { kind: 'terminated', ...term };
    if (this.#stopping || !shouldRestart(this.#o.restartPolicy, term.exitCode)) {
      this.#finished = true;
      this.#o.onChange();
      return;
    }
    const delay = this.#backoff.delay(term.finishedAt.getTime(), Date.now());
    if (delay === 0) return this.#restart(term);
    this.#last = term;
    const backoff = formatDuration(this.#backoff.currentMs());
    this.#state = {
      kind: 'waiting',
      reason: 'CrashLoopBackOff',
      message: `back-off ${backoff} restarting failed container=${this.name} pod=${this.#o.podLabel}`,
    };
    this.#o.onEvent?.('Warning', 'BackOff', `Back-off restarting failed container ${this.name} in pod ${this.#o.podLabel}`);
    this.#timer = setTimeout(() => this.#restart(term), delay);
    this.#o.onChange();
  }

  #restart(term: Terminated): void {
    this.#timer = undefined;
    if (this.#stopping) return;
    this.#backoff.recordRestart(term.finishedAt.getTime());
    this.#last = term;
    this.#restartCount++;
    this.#state = { kind: 'waiting', reason: 'ContainerCreating' };
    this.#launching = this.#launch();
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
