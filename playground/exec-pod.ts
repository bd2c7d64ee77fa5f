// Finds the network namespace of a playground pod, for `weft dev exec`.
import { existsSync } from 'node:fs';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { podNetnsName } from './config.ts';
import { readState } from './state.ts';

export async function podNetns(playground: string, target: string): Promise<string> {
  const [namespace, name] = target.split('/');
  if (!namespace || !name) throw new Error(`"${target}" is not <namespace>/<pod>`);
  const s = await readState(playground);
  if (!s) throw new Error(`no playground named "${playground}" is running`);
  const kc = new KubeConfig();
  kc.loadFromFile(s.plan.paths.adminKubeconfig);
  const pod = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name });
  const uid = pod.metadata?.uid;
  if (!uid) throw new Error(`pod ${target} has no UID`);
  const netns = podNetnsName(playground, uid);
  if (!existsSync(`/run/netns/${netns}`)) throw new Error(`pod ${target} has no network yet (phase ${pod.status?.phase ?? 'unknown'})`);
  return netns;
}
