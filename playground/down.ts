// `weft dev down`: stops a playground and removes everything it made — processes, network
// namespaces (pods included), links, and its runtime directory — even when its supervisor died.
import { rm } from 'node:fs/promises';
import { cleanRealNode, removeCgroups } from './real-node.ts';
import { join } from 'node:path';
import { RUN_ROOT } from './config.ts';
import { destroyNetwork } from './net.ts';
import { isAlive, readState } from './state.ts';
import { killGroup } from './supervisor.ts';

async function waitExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !isAlive(pid);
}

/** Returns false when there was nothing to stop. */
export async function teardown(name: string): Promise<boolean> {
  const state = await readState(name);
  if (state && state.supervisorPid !== process.pid && isAlive(state.supervisorPid)) {
    // The supervisor stops its children in order (kubelets release their pods through CNI DEL).
    process.kill(state.supervisorPid, 'SIGTERM');
    if (!(await waitExit(state.supervisorPid, 30_000))) process.kill(state.supervisorPid, 'SIGKILL');
  }
  for (const pid of Object.values(state?.pids ?? {})) killGroup(pid, 'SIGKILL');
  // Real nodes' containers and shims are no process group of ours: they are found by cgroup and
  // by their containerd socket.
  if (state?.runtime === 'real') for (const n of state.plan.nodes) await cleanRealNode(state.plan, n);
  await removeCgroups(name);
  // Whatever is still there (a crashed supervisor, a half-made start) goes now.
  await destroyNetwork({ name, hostLink: `wpg-${name}` });
  await rm(join(RUN_ROOT, name), { recursive: true, force: true });
  await rm(join(RUN_ROOT, `${name}.log`), { force: true });
  return state !== undefined;
}
