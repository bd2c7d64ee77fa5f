// Two controller replicas with the agents split between them, as a Deployment of two behind a
// Service gives on any cluster: node-1's agent talks to the leader, node-2's to the standby. A
// policy that selects pods on both nodes must still reach Programmed=True, written by the leader
// from its own agent's ACK and the standby's programmed report (controller/policy/
// programmed-reports.ts). Before that report existed the leader listed node-2 as "its agent never
// connected to this controller" for ever; real nodes found it.
//
// The harness is the chaos suite's (tests/helpers/chaos-controllers.ts): the test takes the
// controller over from the playground and runs both replicas itself; a DNAT in node-2's network
// namespace stands in for the Service choosing the standby.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AGENT_API_PORT, ControllerReplicas } from './helpers/chaos-controllers.ts';
import { deployEchoPods } from './helpers/echo-pods.ts';
import { Playground, sh, uniqueName } from './helpers/playground.ts';

t.setTimeout(600_000);

const pg = new Playground(uniqueName('rep'), { runtime: 'simulated' });
const NS = 'replicas';
const suffix = randomBytes(2).toString('hex');
const table = `weft_replicas_${suffix}`;
let replicas: ControllerReplicas | undefined;
let node2Netns = '';

t.teardown(async () => {
  await replicas?.close();
  if (node2Netns) await sh('ip', ['netns', 'exec', node2Netns, 'nft', 'delete', 'table', 'ip', table]);
  await pg.down();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a policy on nodes served by different replicas is Programmed on all of them', async (t) => {
  let status = await pg.start(2);
  const kubectl = (args: string[]) => sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { timeoutMs: 20_000 });
  ({ status } = await deployEchoPods(pg, NS, { client: 'node-2' }));
  const hostIP = new URL(status.apiServer).hostname;
  node2Netns = status.nodes.find((n) => n.name === 'node-2')?.netns ?? '';
  t.ok(node2Netns, 'node-2 has a network namespace');

  // node-2's agent will find the standby where the controller was.
  const standbyPort = 15112;
  const rules = [
    `add table ip ${table}`,
    `add chain ip ${table} out { type nat hook output priority -100; }`,
    `add rule ip ${table} out ip daddr ${hostIP} tcp dport ${AGENT_API_PORT} dnat to ${hostIP}:${standbyPort}`,
  ].join('\n');
  const nft = await sh('ip', ['netns', 'exec', node2Netns, 'nft', '-f', '-'], { input: rules });
  t.equal(nft.code, 0, `route node-2's agent API connections to the standby ${nft.stderr}`);

  const state = JSON.parse(readFileSync(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> };
  const r = new ControllerReplicas({ hostIP, nodeNetns: status.nodes.map((n) => n.netns), logDir: `${pg.dir}/logs`, kubectl });
  replicas = r;
  await r.adopt(state.pids['weft-controller'] ?? 0);
  const leader = await r.start(`rep-1-${suffix}`, AGENT_API_PORT, 15014);
  t.not(await r.leaderIs(leader.identity, 30_000), Infinity, `${leader.identity} leads`);
  const standby = await r.start(`rep-2-${suffix}`, standbyPort, 15114);
  t.ok((await r.connected(leader, ['node-1'], 60_000)) >= 0, "node-1's agent is connected to the leader");
  t.ok((await r.connected(standby, ['node-2'], 60_000)) >= 0, "node-2's agent is connected to the standby");

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

  const report = await kubectl(['-n', 'weft-system', 'get', 'configmaps', '-l', 'weft.dev/programmed-report=true', '-o', 'jsonpath={.items[*].metadata.name}']);
  t.same(report.stdout.trim().split(/\s+/), [`weft-programmed-rep-2-${suffix}`], 'only the standby publishes a report');

  // A standby that shuts down (SIGTERM, as Kubernetes stops a pod) removes its report rather than
  // leaving the leader to wait out its staleness.
  const exited = new Promise((res) => standby.proc.once('exit', res));
  standby.proc.kill('SIGTERM');
  await exited;
  let gone = false;
  for (let i = 0; i < 40 && !gone; i++) {
    await sleep(500);
    gone = (await kubectl(['-n', 'weft-system', 'get', 'configmap', `weft-programmed-rep-2-${suffix}`])).code !== 0;
  }
  t.ok(gone, 'the stopped standby deleted its report');
});
