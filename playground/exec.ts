// Running host tools (ip, nsenter, ...) with errors that say what failed and why.
import { execFile } from 'node:child_process';

export class CommandError extends Error {
  readonly code = 'COMMAND_FAILED';
  readonly argv: string[];
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(argv: string[], exitCode: number | null, stderr: string) {
    super(`${argv.join(' ')} failed (exit ${exitCode}): ${stderr.trim() || '(no output)'}`);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a command and resolves with its stdout; rejects with a CommandError carrying stderr. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof err.code === 'number' ? err.code : null;
          reject(new CommandError([cmd, ...args], code, String(stderr) || err.message));
        } else resolve(String(stdout));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run(), but a failure is ignored: for cleanup steps whose target may already be gone. */
export async function runQuiet(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** `ip` inside a network namespace (or the root namespace when netns is undefined). */
export function ip(netns: string | undefined, ...args: string[]): Promise<string> {
  return run('ip', netns ? ['-n', netns, ...args] : args);
}

/** Writes a sysctl inside a network namespace. */
export function sysctlIn(netns: string, key: string, value: string): Promise<string> {
  return run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', `${key}=${value}`]);
}
