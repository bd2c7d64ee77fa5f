// Runs the playground's long-lived processes (control plane, kube-proxies, kubelets): each in its
// own process group, optionally inside a network namespace, logging to its own file, restarted
// with backoff if it dies while the playground is up, and stopped in reverse start order.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

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
}

export type SupervisorEvent =
  | { kind: 'started'; name: string; pid: number }
  | { kind: 'exited'; name: string; code: number | null; signal: NodeJS.Signals | null; restartInMs: number };

export class Supervisor {
  readonly #procs: Managed[] = [];
  #stopping = false;
  readonly #onEvent: (e: SupervisorEvent) => void;

  constructor(onEvent: (e: SupervisorEvent) => void = () => {}) {
    this.#onEvent = onEvent;
  }

  start(spec: ProcessSpec): void {
    const m: Managed = { spec, child: undefined, restarts: 0, timer: undefined };
    this.#procs.push(m);
    this.#launch(m);
  }

  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of this.#procs) if (m.child?.pid) out[m.spec.name] = m.child.pid;
    return out;
  }

  #launch(m: Managed): void {
    const { spec } = m;
    const argv = spec.netns ? ['nsenter', `--net=/run/netns/${spec.netns}`, '--', spec.cmd, ...spec.args] : [spec.cmd, ...spec.args];
    const fd = openSync(spec.logFile, 'a');
    const child = spawn(argv[0] as string, argv.slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: spec.env ?? process.env,
    });
    closeSync(fd);
    m.child = child;
    const started = Date.now();
    child.on('spawn', () => this.#onEvent({ kind: 'started', name: spec.name, pid: child.pid ?? -1 }));
    child.on('error', () => {
      /* reported through 'exit' */
    });
    child.on('exit', (code, signal) => {
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
      await stopChild(m.child, graceMs);
    }
  }
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
