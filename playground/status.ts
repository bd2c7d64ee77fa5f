// `weft dev status`: what the playground is made of, in a form people and tools can read.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { podNetnsName, type PlaygroundPlan } from './config.ts';
import { realPodNetnsPath } from './exec-pod.ts';
import { run } from './exec.ts';
import { isAlive, readState } from './state.ts';
import { spiffeId } from '../api/agent-sync.ts';

export interface PodStatus {
  namespace: string;
  name: string;
  node: string;
  /** The simulated kubelet's named namespace; '' on real nodes, whose pod namespaces live in the node's mount namespace. */
  netns: string;
  /** What `nsenter --net=` enters, on both runtimes ('' until the pod has a network). */
  netnsPath: string;
  ip: string;
  phase: string;
  /** The node agent captures the pod's traffic. */
  meshed: boolean;
  identity: string;
}

export interface NodeStatus {
  name: string;
  netns: string;
  ip: string;
  podCIDR: string;
  ready: boolean;
}

export interface DevStatus {
  name: string;
  phase: string;
  supervisorPid: number;
  upSeconds: number | undefined;
  kubeconfig: string;
  kubectl: string;
  apiServer: string;
  nodes: NodeStatus[];
  pods: PodStatus[];
  /**
   * Weft's own processes, run from the helm release's pod templates (playground/chart-runner.ts):
   * `kubectl get pods -n weft-system` lists none of them. A draining agent shows as `name@pid`.
   */
  weft: { process: string; pid: number }[];
}

export async function status(name: string): Promise<DevStatus> {
  const s = await readState(name);
  if (!s) throw new Error(`no playground named "${name}" is running; start one with "weft dev up"`);
  const phase = isAlive(s.supervisorPid) ? s.phase : 'dead (run "weft dev down" to clean up)';
  const plan = s.plan;
  const kc = new KubeConfig();
  kc.loadFromFile(plan.paths.adminKubeconfig);
  const api = kc.makeApiClient(CoreV1Api);
  const [nodeList, podList, enrolled] = await Promise.all([api.listNode(), api.listPodForAllNamespaces(), s.mesh ? enrolledPods(plan.nodes) : new Set<string>()]);
  const ready = new Map(
    nodeList.items.map((n) => [n.metadata?.name ?? '', n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false]),
  );
  return {
    name: s.name,
    phase,
    supervisorPid: s.supervisorPid,
    upSeconds: s.upSeconds,
    kubeconfig: plan.paths.adminKubeconfig,
    kubectl: join(plan.binDir, 'kubectl'),
    apiServer: `https://${plan.hostIP}:${plan.apiServerPort}`,
    nodes: plan.nodes.map((n) => ({ name: n.name, netns: n.netns, ip: n.ip, podCIDR: n.podCIDR, ready: ready.get(n.name) ?? false })),
    pods: await Promise.all(podList.items.map((p) => podStatus(s.name, p, enrolled, s.runtime === 'real' ? plan : undefined))),
    weft: Object.entries(s.pids)
      .filter(([process, pid]) => process.startsWith('weft-') && isAlive(pid))
      .map(([process, pid]) => ({ process, pid }))
      .sort((a, b) => a.process.localeCompare(b.process)),
  };
}

/** Pod UIDs the node agents capture, from each agent's admin endpoint (localhost of its node). */
async function enrolledPods(nodes: { netns: string }[]): Promise<Set<string>> {
  const uids = new Set<string>();
  await Promise.all(
    nodes.map(async (n) => {
      const out = await run('nsenter', [`--net=/run/netns/${n.netns}`, '--', 'curl', '-sf', '-m', '2', 'http://127.0.0.1:15000/enrolments']).catch(() => '[]');
      for (const e of JSON.parse(out) as { uid: string }[]) uids.add(e.uid);
    }),
  );
  return uids;
}

async function podStatus(playground: string, p: V1Pod, enrolled: Set<string>, realPlan?: PlaygroundPlan): Promise<PodStatus> {
  const uid = p.metadata?.uid ?? '';
  const named = uid && !realPlan ? podNetnsName(playground, uid) : '';
  const netns = named && existsSync(`/run/netns/${named}`) ? named : '';
  const node = p.spec?.nodeName ?? '';
  // A hostNetwork pod's sandbox is in the node's namespace: its path is the node's, like any other.
  const real = realPlan && uid && node && p.status?.phase === 'Running' ? await realPodNetnsPath(realPlan, node, uid) : undefined;
  return {
    namespace: p.metadata?.namespace ?? '',
    name: p.metadata?.name ?? '',
    node,
    netns,
    netnsPath: netns ? `/run/netns/${netns}` : (real ?? ''),
    ip: p.status?.podIP ?? '',
    phase: p.status?.phase ?? '',
    meshed: enrolled.has(uid),
    identity: enrolled.has(uid) ? spiffeId('cluster.local', p.metadata?.namespace ?? '', p.spec?.serviceAccountName ?? 'default') : '',
  };
}

export function formatStatus(s: DevStatus): string {
  const lines = [
    `playground ${s.name}: ${s.phase}${s.upSeconds !== undefined ? ` (up in ${s.upSeconds} s)` : ''}`,
    `  kubeconfig: ${s.kubeconfig}`,
    `  kubectl:    ${s.kubectl}   (or: weft dev kubectl ...)`,
    `  API server: ${s.apiServer}`,
    '',
    'NODE        READY  IP            POD CIDR          NETNS',
    ...s.nodes.map((n) => `${n.name.padEnd(11)} ${String(n.ready).padEnd(6)} ${n.ip.padEnd(13)} ${n.podCIDR.padEnd(17)} ${n.netns}`),
    '',
    'NAMESPACE/POD                        NODE        PHASE      IP              MESHED  IDENTITY',
    ...s.pods.map(
      (p) => `${`${p.namespace}/${p.name}`.padEnd(36)} ${p.node.padEnd(11)} ${p.phase.padEnd(10)} ${p.ip.padEnd(15)} ${String(p.meshed).padEnd(7)} ${p.identity}`,
    ),
  ];
  if (s.weft.length > 0) {
    lines.push('', 'WEFT (helm release weft in weft-system, run as processes from its pod templates)   PID');
    for (const w of s.weft) lines.push(`${w.process.padEnd(84)} ${w.pid}`);
  }
  return lines.join('\n');
}
