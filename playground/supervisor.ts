// Runs the playground's long-lived processes (control plane, kube-proxies, kubelets): each in its
// own process group, optionally inside a network namespace, logging to its own file, restarted
// with backoff if it dies while the playground is up, and stopped in reverse start order.
//
// replace() upgrades one process in place the way a DaemonSet with maxSurge does: the new process
// starts beside the old one (same spec), and only once it is ready does the old one get SIGTERM.
// The old one is then "retired": it may run on for a while (an agent drains its connections), is
// never restarted, and is stopped with the rest.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { CodedError } from '../api/coded-error.ts';

export interface ProcessSpec {
  name: string;
  cmd: string;
  args: string[];
  /** Run inside this network namespace (by name, under /run/netns). */
  netns?: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
}

interface Managed {
  spec: ProcessSpec;
  child: ChildProcess | undefined;
  restarts: number;
  timer: NodeJS.Timeout | undefined;
  /** A successor started by replace() that is not ready yet. */
  successor: ChildProcess | undefined;
  /** Replaced processes that have not exited yet. */
  retired: Set<ChildProcess>;
}

export type SupervisorEvent =
  | { kind: 'started'; name: string; pid: number }
  | { kind: 'exited'; name: string; code: number | null; signal: NodeJS.Signals | null; restartInMs: number }
  | { kind: 'replaced'; name: string; oldPid: number; newPid: number }
  | { kind: 'retired'; name: string; pid: number; code: number | null; signal: NodeJS.Signals | null };

export interface ReplaceOptions {
  /** The new process's spec (an upgrade); default: the same as the old one's. */
  spec?: ProcessSpec;
  /** True once the new process (by pid) is ready; may throw while it is not. */
  ready: (pid: number) => Promise<boolean>;
  /** Give up (and stop the new process) if it is not ready by then. */
  timeoutMs: number;
}

export interface Replacement {
  oldPid: number;
  newPid: number;
  /** From the new process's start to its readiness. */
  readyMs: number;
}

export class SupervisorError extends CodedError<'NO_SUCH_PROCESS' | 'NOT_RUNNING' | 'RUNNING' | 'REPLACE_IN_PROGRESS' | 'SUCCESSOR_EXITED' | 'SUCCESSOR_NOT_READY' | 'STOPPING'> {
  override readonly name = 'SupervisorError';
}

export class Supervisor {
  readonly #procs: Managed[] = [];
  #stopping = false;
  readonly #onEvent: (e: SupervisorEvent) => void;

  constructor(onEvent: (e: SupervisorEvent) => void = () => {}) {
    this.#onEvent = onEvent;
  }

  /** Starts `spec.name`; a name retired before starts again with the new spec. */
  start(spec: ProcessSpec): void {
    let m = this.#procs.find((p) => p.spec.name === spec.name);
    if (m?.child || m?.timer || m?.successor) throw new SupervisorError('RUNNING', `${spec.name} is running already`);
    if (m) m.spec = spec;
    else {
      m = { spec, child: undefined, restarts: 0, timer: undefined, successor: undefined, retired: new Set() };
      this.#procs.push(m);
    }
    m.restarts = 0;
    this.#launch(m);
  }

  /** Whether `name` has a current process (running, or waiting to be restarted). */
  running(name: string): boolean {
    const m = this.#procs.find((p) => p.spec.name === name);
    return Boolean(m?.child || m?.timer);
  }

  /**
   * Stops `name` the way the kubelet stops a deleted pod: SIGTERM now, and it is not restarted.
   * It may take its time to exit (an agent drains); stopAll() still stops it. Resolves when it
   * has exited (at once if nothing ran).
   */
  retire(name: string): Promise<void> {
    const m = this.#procs.find((p) => p.spec.name === name);
    if (!m) return Promise.resolve();
    if (m.timer) clearTimeout(m.timer);
    m.timer = undefined;
    const old = m.child;
    m.child = undefined;
    if (old?.pid === undefined) return Promise.resolve();
    return this.#retireChild(m, old as ChildProcess & { pid: number });
  }

  /** Current processes by name; successors and retired ones under `<name>@<pid>` (for `down`). */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of this.#procs) {
      if (m.child?.pid) out[m.spec.name] = m.child.pid;
      for (const c of [m.successor, ...m.retired]) if (c?.pid) out[`${m.spec.name}@${c.pid}`] = c.pid;
    }
    return out;
  }

  /**
   * Upgrades the process `name` in place: starts a new one with the same spec, waits until
   * `ready(newPid)`, then sends SIGTERM to the old one's group and returns (the old one may take
   * its time to exit). If the new process exits or is not ready in time, it is stopped and the
   * old one keeps running.
   */
  async replace(name: string, o: ReplaceOptions): Promise<Replacement> {
    const m = this.#procs.find((p) => p.spec.name === name);
    if (!m) throw new SupervisorError('NO_SUCH_PROCESS', `no process named ${name}`);
    if (this.#stopping) throw new SupervisorError('STOPPING', 'the supervisor is stopping');
    if (m.successor) throw new SupervisorError('REPLACE_IN_PROGRESS', `${name} is being replaced already`);
    const old = m.child;
    if (!old?.pid) throw new SupervisorError('NOT_RUNNING', `${name} is not running (restarting?)`);
    const started = performance.now();
    const spec = o.spec ?? m.spec;
    const successor = this.#spawn(spec);
    m.successor = successor;
    successor.on('spawn', () => this.#onEvent({ kind: 'started', name, pid: successor.pid ?? -1 }));
    const exited = new Promise<never>((_, reject) =>
      successor.once('exit', (code, signal) => reject(new SupervisorError('SUCCESSOR_EXITED', `the new ${name} exited (code ${code}, signal ${signal}) before it was ready`))),
    );
    exited.catch(() => {});
    try {
      const pid = await Promise.race([spawned(successor), exited]);
      await Promise.race([untilReady(() => o.ready(pid), o.timeoutMs, name), exited]);
    } catch (err) {
      m.successor = undefined;
      await stopChild(successor, 5000);
      throw err;
    }
    m.successor = undefined;
    const readyMs = performance.now() - started;
    if (m.child !== old || this.#stopping) {
      // The old one died meanwhile (and is being restarted) or everything is stopping: keep the new one out.
      await stopChild(successor, 5000);
      throw new SupervisorError(this.#stopping ? 'STOPPING' : 'NOT_RUNNING', `${name} changed while its successor started`);
    }
    m.spec = spec;
    this.#adopt(m, successor);
    void this.#retireChild(m, old as ChildProcess & { pid: number });
    const newPid = successor.pid ?? -1;
    this.#onEvent({ kind: 'replaced', name, oldPid: old.pid, newPid });
    return { oldPid: old.pid, newPid, readyMs };
  }

  /**
   * SIGTERM to a process that is no longer `m.child`: its own exit handler then does nothing, so
   * it is not restarted. Resolves when it has exited.
   */
  #retireChild(m: Managed, old: ChildProcess & { pid: number }): Promise<void> {
    m.retired.add(old);
    const exited = new Promise<void>((resolve) =>
      old.once('exit', (code, signal) => {
        m.retired.delete(old);
        this.#onEvent({ kind: 'retired', name: m.spec.name, pid: old.pid, code, signal });
        resolve();
      }),
    );
    killGroup(old.pid, 'SIGTERM');
    return exited;
  }

  #spawn(spec: ProcessSpec): ChildProcess {
    const argv = spec.netns ? ['nsenter', `--net=/run/netns/${spec.netns}`, '--', spec.cmd, ...spec.args] : [spec.cmd, ...spec.args];
    const fd = openSync(spec.logFile, 'a');
    const child = spawn(argv[0] as string, argv.slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: spec.env ?? process.env,
    });
    closeSync(fd);
    child.on('error', () => {
      /* reported through 'exit' */
    });
    return child;
  }

  #launch(m: Managed): void {
    const child = this.#spawn(m.spec);
    child.on('spawn', () => this.#onEvent({ kind: 'started', name: m.spec.name, pid: child.pid ?? -1 }));
    this.#adopt(m, child);
  }

  /** Makes `child` the process of `m`: restarted with backoff when it dies. */
  #adopt(m: Managed, child: ChildProcess): void {
    const { spec } = m;
    m.child = child;
    const started = Date.now();
    child.on('exit', (code, signal) => {
      if (m.child !== child) return;
      m.child = undefined;
      if (this.#stopping) return;
      // Back off 1 s doubling to 30 s; a process that stayed up for a minute starts over.
      if (Date.now() - started > 60_000) m.restarts = 0;
      const delay = Math.min(30_000, 1000 * 2 ** m.restarts++);
      this.#onEvent({ kind: 'exited', name: spec.name, code, signal, restartInMs: delay });
      m.timer = setTimeout(() => this.#launch(m), delay);
    });
  }

  /** Stops processes in reverse start order: SIGTERM to the group, SIGKILL after graceMs. */
  async stopAll(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    for (const m of [...this.#procs].reverse()) {
      if (m.timer) clearTimeout(m.timer);
      await Promise.all([m.child, m.successor, ...m.retired].map((c) => stopChild(c, graceMs)));
    }
  }
}

function spawned(child: ChildProcess): Promise<number> {
  if (child.pid !== undefined) return Promise.resolve(child.pid);
  return new Promise((resolve) => child.once('spawn', () => resolve(child.pid ?? -1)));
}

async function untilReady(ready: () => Promise<boolean>, timeoutMs: number, name: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      if (await ready()) return;
      last = 'not ready';
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new SupervisorError('SUCCESSOR_NOT_READY', `the new ${name} was not ready after ${timeoutMs} ms (${last})`);
}

export async function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  killGroup(pid, 'SIGTERM');
  const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  killGroup(pid, 'SIGKILL'); // stragglers in the group
}

export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* group already gone */
  }
}
