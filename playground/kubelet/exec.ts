// Running short-lived helper programs (ip, CNI plugins, exec probes): stdin in, stdout and stderr
// captured, a deadline enforced on the whole process group so that a hung helper cannot hang the
// kubelet, and an optional network namespace to run in.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunOptions {
  /** Written to the program's stdin, which is then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** SIGKILL the program's process group after this long; no deadline if unset. */
  timeoutMs?: number;
  /** Run inside this network namespace (a path such as /run/netns/x) through nsenter. */
  netnsPath?: string;
  /** Keep at most this many bytes of each output stream (probes read 10 KiB, like the kubelet). */
  maxOutputBytes?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

// By absolute path: a container's own PATH (its env is the child's env) must not decide whether
// nsenter is found.
const NSENTER = ['/usr/bin/nsenter', '/bin/nsenter'].find((p) => existsSync(p)) ?? 'nsenter';

/** argv that runs `argv` inside the network namespace at `netnsPath` (or unchanged without one). */
export function inNetns(netnsPath: string | undefined, argv: readonly string[]): string[] {
  return netnsPath ? [NSENTER, `--net=${netnsPath}`, '--', ...argv] : [...argv];
}

/** Runs a program to completion. Rejects only if it cannot be started at all. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = inNetns(opts.netnsPath, argv);
  const [cmd, ...args] = full;
  if (!cmd) return Promise.reject(new Error('run: empty argv'));
  const max = opts.maxOutputBytes ?? 1 << 20;
  return new Promise((resolve, reject) => {
    // Own process group, so that the deadline also reaches what a shell started.
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < max) out.push(b.subarray(0, max - outLen));
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < max) err.push(b.subarray(0, max - errLen));
      errLen += b.length;
    });
    // A program may exit without reading its stdin; that is its business, not an error here.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');

    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killGroup(child.pid, 'SIGKILL');
          }, opts.timeoutMs);
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      // Anything the program left behind in its group goes with it.
      killGroup(child.pid, 'SIGKILL');
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
  });
}

/** Signals a whole process group; a group that is already gone is not an error. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals): boolean {
  if (!pid) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}
