// Finds the network namespace of a playground pod, for `weft dev exec`: the simulated kubelet's
// named namespace, or on real nodes the namespace of a process in the pod's cgroup (its sandbox).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { podNetnsName, type PlaygroundPlan } from './config.ts';
import { cgroupRoot } from './real-node.ts';
import { readState } from './state.ts';

/**
 * A path that `nsenter --net=<path>` enters. The pod is read with the playground's kubectl, not
 * @kubernetes/client-node: importing that library took 11-12 s at load 30-40 on 2 cores (a bare
 * Node start: 0.2-0.4 s), which made `weft dev exec` take 10-32 s there and overrun the suites'
 * limits (the mesh suite's "frozen controller" exec: it was the load, not the controller).
 */
export async function podNetnsPath(playground: string, target: string): Promise<string> {
  const [namespace, name] = target.split('/');
  if (!namespace || !name) throw new Error(`"${target}" is not <namespace>/<pod>`);
  const s = await readState(playground);
  if (!s) throw new Error(`no playground named "${playground}" is running`);
  const kubectl = spawnSync(join(s.plan.binDir, 'kubectl'), [`--kubeconfig=${s.plan.paths.adminKubeconfig}`, '-n', namespace, 'get', 'pod', name, '-o', 'json'], { encoding: 'utf8', maxBuffer: 8 << 20 });
  if (kubectl.status !== 0) throw new Error(`pod ${target}: ${kubectl.stderr.trim() || kubectl.error?.message || 'kubectl failed'}`);
  const pod = JSON.parse(kubectl.stdout) as { metadata?: { uid?: string }; spec?: { nodeName?: string }; status?: { phase?: string } };
  const uid = pod.metadata?.uid;
  if (!uid) throw new Error(`pod ${target} has no UID`);
  const notYet = new Error(`pod ${target} has no network yet (phase ${pod.status?.phase ?? 'unknown'})`);
  if (s.runtime === 'real') {
    const node = pod.spec?.nodeName;
    const path = node ? await realPodNetnsPath(s.plan, node, uid) : undefined;
    if (!path) throw notYet;
    return path;
  }
  const netns = podNetnsName(playground, uid);
  if (!existsSync(`/run/netns/${netns}`)) throw notYet;
  return `/run/netns/${netns}`;
}

/** On a real node: the network namespace of a process of the pod (its sandbox's), if it runs. */
export async function realPodNetnsPath(plan: PlaygroundPlan, node: string, uid: string): Promise<string | undefined> {
  const pid = await firstPid(join('/sys/fs/cgroup/pids', cgroupRoot(plan, { name: node })), `pod${uid}`);
  return pid ? `/proc/${pid}/ns/net` : undefined;
}

/** A process in the cgroup named `leaf` somewhere below `dir` (the kubelet nests pods by QoS class). */
async function firstPid(dir: string, leaf: string): Promise<number | undefined> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    if (e.name === leaf) {
      const procs = await readFile(join(sub, 'cgroup.procs'), 'utf8').catch(() => '');
      const own = procs.split('\n').find((l) => /^\d+$/.test(l));
      if (own) return Number(own);
      for (const c of await readdir(sub, { withFileTypes: true }).catch(() => [])) {
        if (!c.isDirectory()) continue;
        const line = (await readFile(join(sub, c.name, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').find((l) => /^\d+$/.test(l));
        if (line) return Number(line);
      }
      return undefined;
    }
    const found = await firstPid(sub, leaf);
    if (found) return found;
  }
  return undefined;
}
