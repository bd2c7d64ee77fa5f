// Pod network namespaces, made and removed with iproute2 the way a container runtime's sandbox
// does it: named, bind-mounted under /run/netns, loopback up before any CNI plugin runs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KubeletError } from './errors.ts';
import { run } from './exec.ts';

export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** Creates the namespace with loopback up; an existing namespace of that name is kept. */
export async function createNetns(name: string): Promise<void> {
  if (!netnsExists(name)) await ip(['netns', 'add', name]);
  // The runtime, not a CNI plugin, owns loopback (containerd and CRI-O both bring it up).
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Removes the namespace; one that does not exist is already removed. */
export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  await ip(['netns', 'delete', name]);
}

async function ip(args: string[]): Promise<void> {
  const r = await run(['ip', ...args], { timeoutMs: 10_000 });
  if (r.code !== 0) {
    throw new KubeletError('NETNS_FAILED', `ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
  }
}
