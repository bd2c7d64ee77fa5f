// Finds the network namespace of a playground pod, for `weft dev exec`: the simulated kubelet's
// named namespace, or on real nodes the namespace of a process in the pod's cgroup (its sandbox).
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { podNetnsName, type PlaygroundPlan } from './config.ts';
import { cgroupRoot } from './real-node.ts';
import { readState } from './state.ts';

/** A path that `nsenter --net=<path>` enters. */
export async function podNetnsPath(playground: string, target: string): Promise<string> {
  const [namespace, name] = target.split('/');
  if (!namespace || !name) throw new Error(`"${target}" is not <namespace>/<pod>`);
  const s = await readState(playground);
  if (!s) throw new Error(`no playground named "${playground}" is running`);
  const kc = new KubeConfig();
  kc.loadFromFile(s.plan.paths.adminKubeconfig);
  const pod = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name });
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
