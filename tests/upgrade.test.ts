// End to end: hitless agent upgrades on a real playground. Established meshed connections — across
// nodes through HBONE tunnels, and on one node — keep exchanging data while the agent of each node
// is upgraded in place the way the chart's DaemonSet does it (`weft dev restart-agent`: the new
// agent process first, ready, then SIGTERM to the old one, which drains). The measure is the
// number of connections dropped per agent restart; the goal is 0. The same harness then shows
// that a plain restart (the agent killed) does drop them, so the count can fail.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { deployEchoPods } from './helpers/echo-pods.ts';
import { Holder } from './helpers/holder.ts';
import { Playground, sh, uniqueName, weft, type DevStatusJson } from './helpers/playground.ts';

const pg = new Playground(uniqueName('up'));
const holders: Holder[] = [];
t.teardown(async () => {
  for (const h of holders) h.kill();
  await pg.down();
});

const NS = 'upgrade';
const FAR = 50; // connections from node-2 to the server on node-1: tunnelled
const NEAR = 10; // connections from node-1 to the server on node-1: same node
let status: DevStatusJson;
let serverIP = '';
const netnsOf = (name: string) => status.pods.find((p) => p.namespace === NS && p.name === name)?.netns ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hold = (podName: string, count: number) => {
  const h = new Holder(netnsOf(podName), `${serverIP}:9000`, count);
  holders.push(h);
  return h;
};

interface AgentRestart {
  node: string;
  oldPid: number;
  newPid: number;
  readyMs: number;
}

async function restartAgent(node: string): Promise<AgentRestart> {
  const r = await weft(['dev', 'restart-agent', node, '--name', pg.name, '-o', 'json'], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`weft dev restart-agent ${node} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as AgentRestart;
}

/** GET on a node's agent admin endpoint (localhost inside the node). */
async function admin<T>(node: string, path: string): Promise<T> {
  const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-${node}`, 'curl', '-sf', `http://127.0.0.1:15000${path}`]);
  if (r.code !== 0) throw new Error(`admin ${path} on ${node}: exit ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The agent log lines of a node with this message, from the process `pid`. */
function agentLog(node: string, msg: string, pid: number): Record<string, unknown>[] {
  const text = readFileSync(`/run/weft-playground/${pg.name}/nodes/${node}/weft/agent.log`, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.pid === pid);
}

async function until(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.before(async () => {
  await pg.start(2);
  ({ status, serverIP } = await deployEchoPods(pg, NS, { far: 'node-2', near: 'node-1' }));
});

t.test('upgrading both agents drops no established connection; new connections keep working', async (t) => {
  const far = hold('far', FAR);
  const near = hold('near', NEAR);
  t.same(await far.ready(), { type: 'ready', held: FAR }, `${FAR} connections from node-2 to the server on node-1`);
  t.same(await near.ready(), { type: 'ready', held: NEAR }, `${NEAR} connections on node-1`);

  // They are meshed: node-1's agent carries them, tunnelled and same-node.
  type Open = { info: { direction: string; mode: string; source?: { name: string }; destination?: { name: string } } };
  const carried = await admin<Open[]>('node-1', '/connections');
  const count = (direction: string, mode: string, from: string) =>
    carried.filter((c) => c.info.direction === direction && c.info.mode === mode && c.info.source?.name === from && c.info.destination?.name === 'server').length;
  t.ok(count('inbound', 'tunnel', 'far') >= FAR, `node-1 holds the far connections as inbound tunnels (${count('inbound', 'tunnel', 'far')})`);
  t.ok(count('outbound', 'local', 'near') >= NEAR, `and the near ones as same-node deliveries (${count('outbound', 'local', 'near')})`);

  const one = await restartAgent('node-1');
  t.not(one.newPid, one.oldPid, 'node-1: a new agent process');
  await sleep(3000);
  t.ok(alive(one.oldPid), "node-1's old agent still runs: it carries the held connections");
  t.match(await admin('node-1', '/node'), { pid: one.newPid, draining: false }, "node-1's admin endpoint is the new agent's");
  const afterOne = [await far.report(), await near.report()];

  const two = await restartAgent('node-2');
  t.not(two.newPid, two.oldPid, 'node-2: a new agent process');
  await sleep(3000);
  const afterBoth = [await far.report(), await near.report()];

  for (const [name, r] of [['far', afterBoth[0]], ['near', afterBoth[1]]] as const) {
    t.same(r?.dropped, [], `${name}: no held connection dropped`);
    t.equal(r?.open, r?.held, `${name}: all ${r?.held} still open`);
    t.equal(r?.probes.failed, 0, `${name}: every new connection during and after the upgrades worked (${JSON.stringify(r?.probes.failures)})`);
  }
  t.ok((afterBoth[0]?.probes.ok ?? 0) > (afterOne[0]?.probes.ok ?? 0), 'new connections kept succeeding after the second upgrade');
  const verified = [await far.verify(), await near.verify()];
  t.match(verified, [{ ok: FAR, failed: 0 }, { ok: NEAR, failed: 0 }], 'every held connection still echoes afterwards');

  const dropped = afterBoth.reduce((a, r) => a + (r?.dropped.length ?? 0), 0);
  const maxGapMs = Math.max(...afterBoth.map((r) => r?.maxGapMs ?? 0));
  const probes = afterBoth.reduce((a, r) => ({ ok: a.ok + (r?.probes.ok ?? 0), failed: a.failed + (r?.probes.failed ?? 0) }), { ok: 0, failed: 0 });
  t.comment(
    `FIGURES: connections dropped per agent restart: ${dropped / 2} (${dropped} of ${FAR + NEAR} held over 2 restarts); ` +
      `longest pause between echoes on a held connection: ${maxGapMs} ms (ping-pong every 100 ms); ` +
      `new connections during/after: ${probes.ok} ok, ${probes.failed} failed; ` +
      `new agent ready after ${(one.readyMs / 1000).toFixed(2)} s (node-1), ${(two.readyMs / 1000).toFixed(2)} s (node-2)`,
  );

  // The held connections end: each old agent has nothing left, finishes its drain and exits.
  await far.close();
  await near.close();
  await until('the old agents to exit', 20_000, () => !alive(one.oldPid) && !alive(two.oldPid));
  for (const [node, pid] of [['node-1', one.oldPid], ['node-2', two.oldPid]] as const) {
    const [drained] = agentLog(node, 'drained', pid);
    t.match(drained, { outcome: 'drained', connectionsReset: 0 }, `${node}: the old agent drained: ${JSON.stringify(drained)}`);
  }
});

t.test('mutation check: an agent killed without a successor does drop connections', async (t) => {
  const far = hold('far', 20);
  await far.ready();
  const agent = (await admin<{ pid: number }>('node-1', '/node')).pid;
  process.kill(agent, 'SIGKILL'); // the supervisor starts a new one, as a plain restart would
  await sleep(3000);
  const r = await far.report();
  t.ok(r.dropped.length > 0, `the kill dropped ${r.dropped.length} of 20 held connections (${r.dropped[0]?.reason ?? '-'})`);
  t.comment(`FIGURES: a plain kill-and-restart of node-1's agent dropped ${r.dropped.length} of 20 held connections`);
  far.kill();
});
