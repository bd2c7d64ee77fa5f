// Container processes: started inside the pod's network namespace through nsenter, each the leader
// of its own process group (our stand-in for a PID namespace: when the leader dies, the rest of its
// group goes too), with stdout and stderr appended to a log file the kubelet does not hold open, so
// that the process survives a kubelet restart and is adopted by the next one.
import { spawn } from 'node:child_process';
import { constants, closeSync, openSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { access, mkdir } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { inNetns, killGroup } from './exec.ts';

export interface ProcessSpec {
  /** argv[0] must already be resolved (see resolveExecutable). */
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** The pod's network namespace, or null to share the kubelet's (hostNetwork). */
  netnsPath: string | null;
  logPath: string;
}

export interface ExitStatus {
  /** The exit code, or 128+signal for a process killed by a signal, as runtimes report it. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  finishedAt: Date;
  /** False for an adopted process: it was not our child, so its exit status is lost. */
  known: boolean;
}

export interface ContainerProcess {
  readonly pid: number;
  readonly startTicks: number;
  readonly startedAt: Date;
  readonly exited: Promise<ExitStatus>;
  /** Signals the whole process group. */
  signal(sig: NodeJS.Signals): void;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Finds the program the way execvp would, so that "not found" is reported before anything runs. */
export async function resolveExecutable(cmd: string, pathEnv: string | undefined, cwd?: string): Promise<string | undefined> {
  const candidates = cmd.includes('/')
    ? [isAbsolute(cmd) ? cmd : join(cwd ?? process.cwd(), cmd)]
    : (pathEnv ?? DEFAULT_PATH)
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** Starts the process; rejects if it cannot be started (the runtime's StartError). */
export async function startProcess(spec: ProcessSpec): Promise<ContainerProcess> {
  const argv = inNetns(spec.netnsPath ?? undefined, spec.argv);
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('empty command');
  await mkdir(dirname(spec.logPath), { recursive: true });
  const fd = openSync(spec.logPath, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env: spec.env, cwd: spec.cwd });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const pid = child.pid as number;
    const exited = new Promise<ExitStatus>((resolve) => {
      child.once('exit', (code, signal) => {
        // The container's "PID 1" is gone: so is everything it left running in its group.
        killGroup(pid, 'SIGKILL');
        resolve({
          exitCode: code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0),
          signal,
          finishedAt: new Date(),
          known: true,
        });
      });
    });
    return {
      pid,
      startTicks: readStartTicks(pid) ?? 0,
      startedAt: new Date(),
      exited,
      signal: (sig) => void killGroup(pid, sig),
    };
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes over a process an earlier kubelet started, if it is still that process (same PID and start
 * time). Its exit is noticed by polling, and its exit code is lost: it is not our child.
 */
export function adoptProcess(pid: number, startTicks: number, startedAt: Date, pollMs = 1000): ContainerProcess | undefined {
  if (!sameProcess(pid, startTicks)) return undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    const timer = setInterval(() => {
      if (sameProcess(pid, startTicks)) return;
      clearInterval(timer);
      killGroup(pid, 'SIGKILL');
      resolve({ exitCode: 255, signal: null, finishedAt: new Date(), known: false });
    }, pollMs);
  });
  return { pid, startTicks, startedAt, exited, signal: (sig) => void killGroup(pid, sig) };
}

/** Start time of a process in clock ticks since boot, or undefined if it does not exist (or is a zombie). */
export function readStartTicks(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

function sameProcess(pid: number, startTicks: number): boolean {
  return readStartTicks(pid) === startTicks;
}
