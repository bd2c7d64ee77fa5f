// Two controller replicas with the agents split between them, as a Deployment of two behind a
// Service gives on any cluster: node-1's agent talks to the leader, node-2's to the standby. A
// policy that selects pods on both nodes must still reach Programmed=True, written by the leader
// from its own agent's ACK and the standby's programmed report (controller/policy/
// programmed-reports.ts). Before that report existed the leader listed node-2 as "its agent never
// connected to this controller" for ever; real nodes found it.
//
// Both runtimes (WEFT_TEST_RUNTIME; tests/replicas-real.test.ts is the real one).
// - Simulated nodes: the harness is the chaos suite's (tests/helpers/chaos-controllers.ts): the
//   test takes the controller over from the playground and runs both replicas itself; a DNAT in
//   node-2's network namespace stands in for the Service choosing the standby.
// - Real nodes: Weft is the chart's, installed by `helm install` with its defaults: the controller
//   Deployment's two replicas (controller.replicas=2) behind the weft-controller Service, the
//   agents a hostNetwork DaemonSet that dials the Service's ClusterIP, where kube-proxy (nftables
//   mode, in each node's network namespace) picks one of the two pods at random for each new
//   connection. To split the agents deterministically, a DNAT in each node's network namespace,
//   ahead of kube-proxy's (priority -120 < its dstnat -100), sends new connections to the
//   Service's ClusterIP:15012 to one pod: node-1's to the leader's IP, node-2's to the standby's.
//   An agent whose stream already went to the other replica is restarted (its process killed; the
//   kubelet restarts the container), so that it dials again through that rule. Restarting agents
//   until kube-proxy's random choice happened to split them would be the same split, but could
//   take any number of tries. The standby is stopped as Kubernetes stops a pod: `kubectl delete
//   pod` (SIGTERM), after which the Deployment makes a replacement under a new name.
import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AGENT_API_PORT, ControllerReplicas, type AgentRecord } from './helpers/chaos-controllers.ts';
import { deployEchoPods } from './helpers/echo-pods.ts';
import { Playground, sh, uniqueName, type DevStatusJson, type WeftPod } from './helpers/playground.ts';

t.setTimeout(600_000);

const pg = new Playground(uniqueName('rep'));
const real = pg.runtime === 'real';
// Real nodes: pods through a real kubelet, agents restarted by it.
if (real) t.setTimeout(900_000);
const NS = 'replicas';
const suffix = randomBytes(2).toString('hex');
const table = `weft_replicas_${suffix}`;
let replicas: ControllerReplicas | undefined;
/** The node network namespaces that have `table` (deleted in teardown, also after a failure). */
const tabled = new Set<string>();
const nodes = ['node-1', 'node-2'];

async function unroute(): Promise<void> {
  for (const ns of [...tabled]) {
    await sh('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', table]);
    tabled.delete(ns);
  }
}

t.teardown(async () => {
  await replicas?.close();
  await unroute();
  await pg.down();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A DNAT in `netns` for new connections to `from` (ip:port), to `to` (ip:port), ahead of kube-proxy's. */
async function dnat(netns: string, from: string, to: string): Promise<{ code: number; stderr: string }> {
  const [ip, port] = from.split(':');
  const rules = [
    `add table ip ${table}`,
    `add chain ip ${table} out { type nat hook output priority -120; }`,
    `add rule ip ${table} out ip daddr ${ip} tcp dport ${port} dnat to ${to}`,
  ].join('\n');
  tabled.add(netns);
  return sh('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { input: rules });
}

/** One replica as the test sees it: its name in the Lease and where its /agents answers. */
interface Replica {
  identity: string;
  health: string;
}

/** Two replicas, one leading, and the agents split: node-1's on the leader, node-2's on the standby. */
interface Split {
  leader: Replica;
  standby: Replica;
  /** Ms the leader took to hold the Lease (Infinity: it never did). */
  leaderMs: number;
  /** Stops the standby as its runtime stops a controller (SIGTERM); resolves when it was asked to. */
  stopStandby(): Promise<void>;
}

const agentsOf = async (r: Replica): Promise<AgentRecord[]> => (await fetch(`${r.health}/agents`, { signal: AbortSignal.timeout(5000) })).json() as Promise<AgentRecord[]>;
const streamsTo = async (r: Replica, node: string): Promise<number> => (await agentsOf(r).catch(() => [])).find((a) => a.node === node)?.streams ?? 0;

/** Ms until `node`'s agent has a stream to `r`; Infinity after `timeoutMs`. */
async function connectedWithin(r: Replica, node: string, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if ((await streamsTo(r, node)) > 0) return Date.now() - start;
    await sleep(200);
  }
  return Infinity;
}

async function simulatedSplit(t: Test, status: DevStatusJson, kubectl: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>): Promise<Split> {
  const hostIP = new URL(status.apiServer).hostname;
  const node2Netns = status.nodes.find((n) => n.name === 'node-2')?.netns ?? '';
  t.ok(node2Netns, 'node-2 has a network namespace');

  // node-2's agent will find the standby where the controller was.
  const standbyPort = 15112;
  const nft = await dnat(node2Netns, `${hostIP}:${AGENT_API_PORT}`, `${hostIP}:${standbyPort}`);
  t.equal(nft.code, 0, `route node-2's agent API connections to the standby ${nft.stderr}`);

  const state = JSON.parse(readFileSync(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> };
  const r = new ControllerReplicas({ hostIP, nodeNetns: status.nodes.map((n) => n.netns), logDir: `${pg.dir}/logs`, kubectl });
  replicas = r;
  await r.adopt(state.pids['weft-controller'] ?? 0);
  const leader = await r.start(`rep-1-${suffix}`, AGENT_API_PORT, 15014);
  const leaderMs = await r.leaderIs(leader.identity, 30_000);
  const standby = await r.start(`rep-2-${suffix}`, standbyPort, 15114);
  return {
    leader: { identity: leader.identity, health: `http://${hostIP}:${leader.healthPort}` },
    standby: { identity: standby.identity, health: `http://${hostIP}:${standby.healthPort}` },
    leaderMs,
    async stopStandby() {
      // SIGTERM, as Kubernetes stops a pod.
      const exited = new Promise((res) => standby.proc.once('exit', res));
      standby.proc.kill('SIGTERM');
      await exited;
    },
  };
}

type ControllerPod = WeftPod & { status: { podIP?: string } };
const podReady = (p: WeftPod) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

async function realSplit(t: Test, status: DevStatusJson, kubectl: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>): Promise<Split> {
  const replicasWanted = (await kubectl(['-n', 'weft-system', 'get', 'deployment', 'weft-controller', '-o', 'jsonpath={.spec.replicas}'])).stdout.trim();
  t.equal(replicasWanted, '2', "the chart's controller Deployment runs two replicas (controller.replicas, its default)");
  // Two Ready pods with IPs, one of them holding the Lease.
  const start = Date.now();
  let pods: ControllerPod[] = [];
  let holder = '';
  let leaderMs = Infinity;
  while (Date.now() - start < 180_000) {
    pods = ((await pg.weftPods('controller')) as ControllerPod[]).filter((p) => !p.metadata.deletionTimestamp && podReady(p) && p.status.podIP);
    holder = (await kubectl(['-n', 'weft-system', 'get', 'lease', 'weft-controller', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout.trim();
    if (pods.length === 2 && pods.some((p) => p.metadata.name === holder)) {
      leaderMs = Date.now() - start;
      break;
    }
    await sleep(1000);
  }
  const leaderPod = pods.find((p) => p.metadata.name === holder);
  const standbyPod = pods.find((p) => p.metadata.name !== holder);
  if (!leaderPod || !standbyPod) throw new Error(`want two Ready controller replicas, one holding the Lease: ${pods.map((p) => p.metadata.name).join(', ')}; holder "${holder}"`);
  const replica = (p: ControllerPod): Replica => ({ identity: p.metadata.name, health: `http://${p.status.podIP}:15014` });
  const leader = replica(leaderPod);
  const standby = replica(standbyPod);

  // Each node's agent dials the Service; the DNAT picks its replica instead of kube-proxy.
  const clusterIP = (await kubectl(['-n', 'weft-system', 'get', 'service', 'weft-controller', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  t.match(clusterIP, /^\d+\.\d+\.\d+\.\d+$/, `the controller Service's ClusterIP (${clusterIP})`);
  const target: Record<string, ControllerPod> = { 'node-1': leaderPod, 'node-2': standbyPod };
  for (const n of nodes) {
    const netns = status.nodes.find((x) => x.name === n)?.netns ?? '';
    t.ok(netns, `${n} has a network namespace`);
    const nft = await dnat(netns, `${clusterIP}:${AGENT_API_PORT}`, `${target[n]?.status.podIP}:${AGENT_API_PORT}`);
    t.equal(nft.code, 0, `route ${n}'s agent API connections to ${target[n]?.metadata.name} ${nft.stderr}`);
  }
  // An agent whose stream went to the other replica dials again, through the rule above.
  for (const n of nodes) {
    const mine = n === 'node-1' ? leader : standby;
    if ((await streamsTo(mine, n)) > 0) {
      t.comment(`${n}'s agent was already connected to ${mine.identity}`);
      continue;
    }
    const pids = await pg.weftPids('agent', n);
    t.ok(pids.length > 0, `${n}'s agent process found (${pids.join(', ')}): killed, for the kubelet to restart it`);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
  }
  return {
    leader,
    standby,
    leaderMs,
    async stopStandby() {
      // Out of the way first: node-2's agent must not keep dialing the IP of a pod that is gone.
      await unroute();
      const del = await kubectl(['-n', 'weft-system', 'delete', 'pod', standby.identity, '--wait=false']);
      if (del.code !== 0) throw new Error(`delete ${standby.identity}: ${del.stderr}`);
    },
  };
}

t.test('a policy on nodes served by different replicas is Programmed on all of them', async (t) => {
  let status = await pg.start(2);
  const kubectl = (args: string[]) => sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { timeoutMs: 20_000 });
  ({ status } = await deployEchoPods(pg, NS, { client: 'node-2' }));

  const split = real ? await realSplit(t, status, kubectl) : await simulatedSplit(t, status, kubectl);
  const { leader, standby } = split;
  t.not(split.leaderMs, Infinity, `${leader.identity} leads`);
  // Agents restarted on real nodes: up to 60 s at high load.
  const connectMs = real ? 120_000 : 60_000;
  t.not(await connectedWithin(leader, 'node-1', connectMs), Infinity, "node-1's agent is connected to the leader");
  t.not(await connectedWithin(standby, 'node-2', connectMs), Infinity, "node-2's agent is connected to the standby");
  // And only there: node-2's ACKs reach the leader through the standby's report alone.
  let crossed: string[] = [];
  for (let i = 0; i < 60; i++) {
    crossed = [...((await streamsTo(leader, 'node-2')) > 0 ? ['node-2 on the leader'] : []), ...((await streamsTo(standby, 'node-1')) > 0 ? ['node-1 on the standby'] : [])];
    if (crossed.length === 0) break;
    await sleep(500);
  }
  t.same(crossed, [], 'no agent has a stream to the other replica');

  // Selects the server (node-1) and the client (node-2): both nodes must enforce it.
  const policy = {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'both-nodes', namespace: NS },
    spec: { rules: [{ from: [{ namespaces: [NS] }] }] },
  };
  await pg.apply(policy);
  type Policy = { metadata: { generation: number }; status?: { programmedNodes?: string; conditions?: { type: string; status: string; observedGeneration: number; message: string }[] } };
  const get = async (): Promise<Policy> => JSON.parse((await kubectl(['-n', NS, 'get', 'accesspolicies.weft.dev', 'both-nodes', '-o', 'json'])).stdout) as Policy;
  const start = Date.now();
  let last: Policy | undefined;
  let programmedAt = Infinity;
  while (Date.now() - start < 60_000) {
    last = await get().catch(() => undefined);
    const c = last?.status?.conditions?.find((c) => c.type === 'Programmed');
    if (c?.status === 'True' && c.observedGeneration === last?.metadata.generation) {
      programmedAt = Date.now();
      break;
    }
    await sleep(500);
  }
  const programmed = last?.status?.conditions?.find((c) => c.type === 'Programmed');
  t.not(programmedAt, Infinity, `Programmed=True within 60 s (${((programmedAt - start) / 1000).toFixed(1)} s): ${programmed?.status} ${programmed?.message}`);
  t.equal(last?.status?.programmedNodes, '2/2', 'both nodes counted');
  t.match(programmed?.message ?? '', /in force on all 2 nodes/, 'the message names both nodes');
  t.equal(await leaderStill(kubectl), leader.identity, 'the leader wrote it (it still holds the Lease)');

  const reportName = `weft-programmed-${standby.identity}`;
  const report = await kubectl(['-n', 'weft-system', 'get', 'configmaps', '-l', 'weft.dev/programmed-report=true', '-o', 'jsonpath={.items[*].metadata.name}']);
  t.same(report.stdout.trim().split(/\s+/), [reportName], 'only the standby publishes a report');

  // A standby that shuts down (SIGTERM, as Kubernetes stops a pod) removes its report rather than
  // leaving the leader to wait out its staleness.
  const stopped = Date.now();
  await split.stopStandby();
  // Real nodes: the kubelet delivers the SIGTERM, seconds after the delete under load.
  const polls = real ? 80 : 40;
  let goneMs = Infinity;
  for (let i = 0; i < polls && goneMs === Infinity; i++) {
    await sleep(500);
    if ((await kubectl(['-n', 'weft-system', 'get', 'configmap', reportName])).code !== 0) goneMs = Date.now() - stopped;
  }
  t.not(goneMs, Infinity, `the stopped standby deleted its report (${(goneMs / 1000).toFixed(1)} s after it was stopped; ${polls} polls 0.5 s apart)`);
});

async function leaderStill(kubectl: (args: string[]) => Promise<{ stdout: string }>): Promise<string> {
  return (await kubectl(['-n', 'weft-system', 'get', 'lease', 'weft-controller', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout.trim();
}
