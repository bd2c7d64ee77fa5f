// Network namespaces for tests: uniquely named (random suffix) and deleted in teardown, also
// when the test fails, so that parallel test runs never meet.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Netns {
  name: string;
  path: string;
}

export function randomSuffix(): string {
  return randomBytes(3).toString('hex');
}

export async function createNetns(t: { teardown(fn: () => unknown): void }, name: string): Promise<Netns> {
  await run('ip', ['netns', 'add', name]);
  t.teardown(() => run('ip', ['netns', 'del', name]).catch(() => undefined));
  return { name, path: `/run/netns/${name}` };
}

/** `ip -j` output of a command run inside a namespace. */
export async function ipJson<T>(netns: string, args: string[]): Promise<T> {
  const { stdout } = await run('ip', ['-n', netns, '-j', ...args]);
  return JSON.parse(stdout) as T;
}
