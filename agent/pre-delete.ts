// `helm uninstall`'s pre-delete hook (helm/weft/templates/agent-uninstall-hook.yaml), a Job that
// runs the agent's image with `--pre-delete`. It makes the uninstall decision of every agent
// (kube/stop-decision.ts) independent of timing. Without it, helm deletes the DaemonSet and, a few
// milliseconds later, the agents' RBAC and ServiceAccount; whether an agent learns of the deletion
// before its SIGTERM is then a race its watch usually, not always, wins (agent/kube/
// daemonset-watch.ts). With it:
// 1. the hook deletes the DaemonSet in the foreground: the DaemonSet carries its deletionTimestamp
//    before the garbage collector deletes any agent pod, so before any agent is signalled;
// 2. helm waits for the hook, so the agents' Role still stands when they are signalled, and each
//    agent's list at SIGTERM (DaemonSetWatch.confirm) says 'deleting';
// 3. the hook ends once every agent pod is gone or has been terminating for `settleMs` (a node
//    that is down never stops its pod: it is not waited for past that), or at `limitMs`.
// Every failure is logged and the hook still succeeds: a hook that fails blocks `helm uninstall`,
// and the agents' watch remains the fallback.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeAccess } from './kube/access.ts';
import { KubeApiError } from './kube/errors.ts';
import { openGet, readJson } from './kube/get.ts';

export interface PreDeleteOptions {
  access: KubeAccess;
  namespace: string;
  /** The agent DaemonSet. */
  name: string;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  settleMs?: number;
  limitMs?: number;
  pollMs?: number;
}

export type PreDeleteOutcome = 'absent' | 'stopped' | 'settled' | 'timed out' | 'failed';

interface PodHead {
  name: string;
  terminating: boolean;
}

export async function preDelete(o: PreDeleteOptions): Promise<PreDeleteOutcome> {
  const settleMs = o.settleMs ?? 10_000;
  const limitMs = o.limitMs ?? 120_000;
  const pollMs = o.pollMs ?? 1000;
  const label = `${o.namespace}/${o.name}`;
  const request = async (what: string, path: string, method: 'GET' | 'DELETE' = 'GET', body?: string): Promise<unknown> => {
    const res = await openGet(o.access, path, { what, signal: AbortSignal.timeout(15_000), headersTimeoutMs: 15_000, method, ...(body !== undefined ? { body } : {}) });
    return readJson(res, what);
  };
  const started = performance.now();
  try {
    await request(
      `delete DaemonSet ${label}`,
      `/apis/apps/v1/namespaces/${encodeURIComponent(o.namespace)}/daemonsets/${encodeURIComponent(o.name)}`,
      'DELETE',
      JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Foreground' }),
    );
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404) {
      o.log('info', 'no agent DaemonSet to delete', { daemonSet: label });
      return 'absent';
    }
    o.log('error', 'deleting the agent DaemonSet failed; the agents decide from their watch alone', { daemonSet: label, error: (e as Error).message });
    return 'failed';
  }
  o.log('info', 'agent DaemonSet deleted (foreground): its agents take Weft off their nodes', { daemonSet: label });

  const terminatingSince = new Map<string, number>();
  for (;;) {
    const now = performance.now();
    let pods: PodHead[];
    try {
      pods = agentPods(await request(`list pods in ${o.namespace}`, `/api/v1/namespaces/${encodeURIComponent(o.namespace)}/pods`), o.name);
    } catch (e) {
      o.log('warn', 'listing the agent pods failed', { error: (e as Error).message });
      pods = [{ name: '?', terminating: false }];
    }
    if (pods.length === 0) {
      o.log('info', 'every agent pod has stopped', { seconds: Math.round(now - started) / 1000 });
      return 'stopped';
    }
    for (const p of pods) if (p.terminating && !terminatingSince.has(p.name)) terminatingSince.set(p.name, now);
    const settled = pods.every((p) => now - (terminatingSince.get(p.name) ?? now) >= settleMs);
    if (settled) {
      o.log('info', 'every agent pod has been stopping long enough to have decided', { pods: pods.map((p) => p.name), settleSeconds: settleMs / 1000 });
      return 'settled';
    }
    if (now - started >= limitMs) {
      o.log('warn', 'gave up waiting for the agent pods', { pods: pods.map((p) => `${p.name}${p.terminating ? ' (terminating)' : ''}`), limitSeconds: limitMs / 1000 });
      return 'timed out';
    }
    await sleep(pollMs);
  }
}

/** The pods a list answer holds whose owner is the DaemonSet `name`. */
export function agentPods(list: unknown, name: string): PodHead[] {
  const items = (list as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) throw new KubeApiError('KUBE_DECODE', 'pod list: no items');
  const out: PodHead[] = [];
  for (const item of items as ({ metadata?: { name?: unknown; deletionTimestamp?: unknown; ownerReferences?: unknown } } | null)[]) {
    const m = item?.metadata;
    const owners = Array.isArray(m?.ownerReferences) ? (m.ownerReferences as ({ kind?: unknown; name?: unknown } | null)[]) : [];
    if (typeof m?.name !== 'string' || !owners.some((r) => r?.kind === 'DaemonSet' && r.name === name)) continue;
    out.push({ name: m.name, terminating: typeof m.deletionTimestamp === 'string' });
  }
  return out;
}
