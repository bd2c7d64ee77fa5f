// The playground's network: a fabric namespace holding a bridge, one namespace per node plugged
// into it, and one veth from the root namespace so that the control plane (which runs in the root
// namespace) and the user's tools reach the nodes. The bridge lives in its own namespace, not in
// the root one, so that the host's firewall (br_netfilter, a Docker FORWARD policy) never sees the
// playground's bridged traffic and the playground never has to touch the host's firewall.
import { readdir } from 'node:fs/promises';
import type { PlaygroundPlan } from './config.ts';
import { ip, run, runQuiet, sysctlIn } from './exec.ts';

const PREFIX = 24;

export async function netnsExists(name: string): Promise<boolean> {
  try {
    return (await readdir('/run/netns')).includes(name);
  } catch {
    return false;
  }
}

async function addNetns(name: string): Promise<void> {
  if (await netnsExists(name)) throw new Error(`network namespace ${name} already exists: run "weft dev down" first`);
  await run('ip', ['netns', 'add', name]);
  await ip(name, 'link', 'set', 'lo', 'up');
}

export async function createNetwork(p: PlaygroundPlan): Promise<void> {
  await addNetns(p.fabricNetns);
  await ip(p.fabricNetns, 'link', 'add', 'br0', 'type', 'bridge');
  await ip(p.fabricNetns, 'link', 'set', 'br0', 'up');

  await ip(undefined, 'link', 'add', p.hostLink, 'type', 'veth', 'peer', 'name', 'host', 'netns', p.fabricNetns);
  await ip(p.fabricNetns, 'link', 'set', 'host', 'master', 'br0', 'up');
  await ip(undefined, 'addr', 'add', `${p.hostIP}/${PREFIX}`, 'dev', p.hostLink);
  await ip(undefined, 'link', 'set', p.hostLink, 'up');

  await Promise.all(p.nodes.map((n) => createNode(p, n.index)));

  // The root namespace reaches pods through their node, and Services through the first node's
  // kube-proxy, so that tools on the host can talk to the cluster the way they would to a real one.
  for (const n of p.nodes) await ip(undefined, 'route', 'replace', n.podCIDR, 'via', n.ip);
  const first = p.nodes[0];
  if (first) await ip(undefined, 'route', 'replace', p.serviceCIDR, 'via', first.ip);
}

async function createNode(p: PlaygroundPlan, index: number): Promise<void> {
  const n = p.nodes[index - 1];
  if (!n) throw new Error(`no node ${index}`);
  const port = `n${index}`;
  await addNetns(n.netns);
  await ip(p.fabricNetns, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns);
  await ip(p.fabricNetns, 'link', 'set', port, 'master', 'br0', 'up');
  await ip(n.netns, 'addr', 'add', `${n.ip}/${PREFIX}`, 'dev', 'eth0');
  await ip(n.netns, 'link', 'set', 'eth0', 'up');
  await sysctlIn(n.netns, 'net.ipv4.ip_forward', '1');
  // net.ipv4.tcp_migrate_req is left as a new namespace has it (0), as on a node nobody tuned:
  // on real nodes the chart's node-sysctls init container sets it, on simulated ones the agent
  // (a host process there) sets it itself (agent/handover.ts, logged at start).
  for (const other of p.nodes) {
    if (other.index !== index) await ip(n.netns, 'route', 'add', other.podCIDR, 'via', other.ip);
  }
  // No default route: nothing a pod sends can leave the playground. Service addresses need a
  // route for the first lookup of locally sent packets; kube-proxy's DNAT then re-routes them.
  await ip(n.netns, 'route', 'add', p.serviceCIDR, 'dev', 'eth0');
}

/** All namespaces that belong to the playground, pods included. */
export async function playgroundNetns(name: string): Promise<string[]> {
  try {
    return (await readdir('/run/netns')).filter((n) => n.startsWith(`wpg-${name}-`));
  } catch {
    return [];
  }
}

/** PIDs of every process living in one of the playground's namespaces. */
export async function pidsInNetns(names: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const ns of names) {
    const out = await run('ip', ['netns', 'pids', ns]).catch(() => '');
    for (const line of out.split('\n')) if (/^\d+$/.test(line.trim())) pids.push(Number(line.trim()));
  }
  return pids;
}

/** Removes everything createNetwork() (and the kubelets) made. Safe to run repeatedly. */
export async function destroyNetwork(p: Pick<PlaygroundPlan, 'name' | 'hostLink'>): Promise<void> {
  const names = await playgroundNetns(p.name);
  for (const pid of await pidsInNetns(names)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  // Pods first (their veths hang off node namespaces), then nodes, then the fabric.
  const order = (n: string) => (n.includes('-pod-') ? 0 : n.endsWith('-fabric') ? 2 : 1);
  for (const ns of names.sort((a, b) => order(a) - order(b))) await runQuiet('ip', ['netns', 'del', ns]);
  await runQuiet('ip', ['link', 'del', p.hostLink]);
}
