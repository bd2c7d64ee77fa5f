// Running a CNI plugin the way a runtime does: a fresh process with CNI_* variables and the
// request configuration on stdin, optionally inside a network namespace (`ip netns exec`).
import { spawn } from 'node:child_process';

export interface PluginRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it is empty or not JSON. */
  json: unknown;
  /** Wall time from spawn to exit. */
  ms: number;
}

export interface ExecOptions {
  /** Run inside this network namespace (by name). */
  netns?: string;
  timeoutMs?: number;
}

export function execPlugin(exe: string, env: Record<string, string>, stdin: string, opts: ExecOptions = {}): Promise<PluginRun> {
  const [cmd, args] = opts.netns === undefined ? [exe, []] : ['ip', ['netns', 'exec', opts.netns, exe]];
  return execCapture(cmd, args, env, stdin, opts.timeoutMs);
}

export function execCapture(cmd: string, args: string[], env: Record<string, string>, stdin: string, timeoutMs = 30_000): Promise<PluginRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // Only what a runtime passes (plus PATH for `ip`): nothing leaks in from the test's env.
    const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: unknown;
      try {
        json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json, ms: performance.now() - started });
    });
    // A program may exit without reading stdin (EPIPE); that is its business, not an error here.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}
