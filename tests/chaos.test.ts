// Chaos on a real playground, with traffic running and counted. A meshed TCP echo server on node-1
// is guarded by an AccessPolicy that admits only its own namespace. While clients on node-2
// (tunnelled) and node-1 (same node) hold busy connections and open new ones every 200 ms, and an
// intruder in another meshed namespace keeps trying to get through, the suite breaks one thing at
// a time: the API server, etcd, the controller, node-1's agent, and the network between the two
// nodes. For each row it reports what a user would ask: did established connections survive (or
// fail closed), how long until new connections work again, did the policy ever fall open, and did
// anything leak. Each row is a test that can fail; the figures go to the FIGURES comments.
import t from 'tap';
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { deployEchoPods, ECHO_PORT } from './helpers/echo-pods.ts';
import { Holder, type Report } from './helpers/holder.ts';
import { Playground, pod, sh, uniqueName, type DevStatusJson } from './helpers/playground.ts';

const pg = new Playground(uniqueName('ch'));
const NS = 'chaos';
const OUTSIDE = 'chaos-out';
const FAR = 20;
const NEAR = 5;
/** New connections must work again within this long after the fault ends. */
const RESUME_BUDGET_MS = 15_000;
const holders: Holder[] = [];
let intruder: ChildProcess | undefined;
let partition = '';
let status: DevStatusJson;
let serverIP = '';
let far: Holder;
let near: Holder;
const breaches: string[] = [];
const rows: string[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const netnsOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name)?.netns ?? '';
const node = (name: string) => status.nodes.find((n) => n.name === name) ?? { name, netns: '', ip: '', podCIDR: '', ready: false };

t.teardown(async () => {
  for (const h of holders) h.kill();
  intruder?.kill('SIGKILL');
  if (partition) await sh('ip', ['netns', 'exec', node('node-2').netns, 'nft', 'delete', 'table', 'inet', partition]);
  await pg.down();
});

/** The pid of one of the playground's processes (etcd, kube-apiserver, weft-controller, ...). */
function pidOf(process: string): number {
  const state = JSON.parse(readFileSync(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> };
  const pid = state.pids[process];
  if (!pid) throw new Error(`no ${process} process in ${Object.keys(state.pids).join(', ')}`);
  return pid;
}

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** One new connection from `client` that echoes a line, as the probes do. */
async function connects(client: string): Promise<boolean> {
  const r = await sh('ip', ['netns', 'exec', netnsOf(NS, client), 'sh', '-c', `echo resume | socat -T2 - TCP:${serverIP}:${ECHO_PORT},connect-timeout=2`], { timeoutMs: 5000 });
  return r.stdout.includes('resume');
}

/** Milliseconds from now until a new connection from `client` works (or the budget runs out). */
async function resumeMs(client: string): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < RESUME_BUDGET_MS * 2) {
    if (await connects(client)) return Date.now() - start;
    await sleep(100);
  }
  return Infinity;
}

/** Waits until `process` runs again under a new pid (the playground's supervisor restarts it). */
async function restarted(process: string, old: number): Promise<number> {
  for (let i = 0; i < 300; i++) {
    try {
      const pid = pidOf(process);
      if (pid !== old) return pid;
    } catch {
      // between the old and the new process
    }
    await sleep(100);
  }
  throw new Error(`${process} did not come back`);
}

interface Row {
  held: { far: Report; near: Report };
  resumeFarMs: number;
  resumeNearMs: number;
}

/** Runs `fault`, then measures the row; `faultEnd` is when the fault is over (process back, link healed). */
async function row(name: string, fault: () => Promise<void>): Promise<Row> {
  const before = { far: await far.report(), near: await near.report() };
  const breachesBefore = breaches.length;
  await fault();
  const [resumeFarMs, resumeNearMs] = await Promise.all([resumeMs('far'), resumeMs('near')]);
  await sleep(1000);
  const after = { far: await far.report(), near: await near.report() };
  const dropped = (k: 'far' | 'near') => after[k].dropped.length - before[k].dropped.length;
  const failedProbes = (k: 'far' | 'near') => after[k].probes.failed - before[k].probes.failed;
  rows.push(
    `| ${name} | far ${dropped('far')}/${after.far.open + dropped('far')}, near ${dropped('near')}/${after.near.open + dropped('near')} dropped | ` +
      `${(resumeFarMs / 1000).toFixed(1)} s / ${(resumeNearMs / 1000).toFixed(1)} s | ${failedProbes('far') + failedProbes('near')} | ` +
      `${breaches.length - breachesBefore} |`,
  );
  return { held: after, resumeFarMs, resumeNearMs };
}

function checkRow(t: Test, r: Row, o: { keepsHeld: boolean }): void {
  t.equal(breaches.length, 0, `the policy never fell open: the intruder got through ${breaches.length} times`);
  t.ok(r.resumeFarMs <= RESUME_BUDGET_MS, `new tunnelled connections work again after ${r.resumeFarMs} ms`);
  t.ok(r.resumeNearMs <= RESUME_BUDGET_MS, `new same-node connections work again after ${r.resumeNearMs} ms`);
  if (o.keepsHeld) {
    t.same(r.held.far.dropped, [], 'no held tunnelled connection dropped');
    t.same(r.held.near.dropped, [], 'no held same-node connection dropped');
  }
}

t.before(async () => {
  status = await pg.start(2);
  ({ status, serverIP } = await deployEchoPods(pg, NS, { far: 'node-2', near: 'node-1' }));
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: OUTSIDE, labels: { 'weft.dev/mesh': 'enabled' } } });
  await pg.apply(pod(OUTSIDE, 'intruder', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(OUTSIDE, ['--all']);
  await pg.apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'own-namespace', namespace: NS }, spec: { rules: [{ from: [{ namespaces: [NS] }] }] } });
  status = await pg.status();
  // In force once the intruder is refused (and the clients still get through).
  for (let i = 0; ; i++) {
    const r = await sh('ip', ['netns', 'exec', netnsOf(OUTSIDE, 'intruder'), 'sh', '-c', `echo in | socat -T1 - TCP:${serverIP}:${ECHO_PORT},connect-timeout=1`], { timeoutMs: 5000 });
    if (!r.stdout.includes('in') && (await connects('far'))) break;
    if (i > 100) throw new Error('the AccessPolicy never came into force');
    await sleep(200);
  }
  far = new Holder(netnsOf(NS, 'far'), `${serverIP}:${ECHO_PORT}`, FAR);
  near = new Holder(netnsOf(NS, 'near'), `${serverIP}:${ECHO_PORT}`, NEAR);
  holders.push(far, near);
  await far.ready();
  await near.ready();
  // The intruder tries every 200 ms for the whole suite; every echo it gets is a breach.
  intruder = spawn('ip', [
    'netns', 'exec', netnsOf(OUTSIDE, 'intruder'), 'sh', '-c',
    `while true; do echo breach | socat -T1 - TCP:${serverIP}:${ECHO_PORT},connect-timeout=1 2>/dev/null; sleep 0.2; done`,
  ]);
  intruder.stdout?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (line.includes('breach')) breaches.push(new Date().toISOString());
  });
});

/** SIGKILL to one of the playground's processes; resolves once its supervisor has started another. */
async function kill(name: string): Promise<void> {
  const old = pidOf(name);
  process.kill(old, 'SIGKILL');
  await restarted(name, old);
}

for (const component of ['kube-apiserver', 'etcd']) {
  t.test(`${component} restart`, async (t) => {
    const r = await row(`${component} killed and restarted`, () => kill(component));
    checkRow(t, r, { keepsHeld: true });
  });
}

t.test('controller killed', async (t) => {
  let readyMs = Infinity;
  const r = await row('controller killed (agents keep their last good state)', async () => {
    const killed = Date.now();
    await kill('weft-controller');
    // The data path must not need it; the next row (an agent restart) does, so wait for it here.
    const health = `http://${new URL(status.apiServer).hostname}:15014/readyz`;
    while (Date.now() - killed < 60_000) {
      if (await fetch(health).then((res) => res.ok, () => false)) {
        readyMs = Date.now() - killed;
        break;
      }
      await sleep(100);
    }
  });
  checkRow(t, r, { keepsHeld: true });
  t.ok(readyMs < 60_000, `the new controller is ready ${readyMs} ms after the kill`);
  rows.push(`| (the new controller ready after) | ${(readyMs / 1000).toFixed(1)} s | | | |`);
});

t.test("node-1's agent killed: held connections through it fail closed, new ones resume", async (t) => {
  const agentProcess = 'weft-agent/node-1';
  const r = await row("node-1's agent killed", () => kill(agentProcess));
  checkRow(t, r, { keepsHeld: false });
  if (r.resumeFarMs > 5000) {
    // Why it took this long: what both agents logged meanwhile.
    for (const n of ['node-1', 'node-2']) {
      const log = readFileSync(`/run/weft-playground/${pg.name}/nodes/${n}/weft/agent.log`, 'utf8').split('\n').slice(-600);
      const reasons = new Map<string, number>();
      for (const line of log) {
        const m = /"(?:error|reason|msg)":"([^"]{0,160})/.exec(line);
        if (m?.[1]) reasons.set(m[1], (reasons.get(m[1]) ?? 0) + 1);
      }
      t.comment(`${n}'s agent log meanwhile: ${JSON.stringify([...reasons].slice(-25))}`);
      for (const line of log.filter((l) => /fetch-failed|NO_CERTIFICATE/.test(l)).slice(0, 3)) t.comment(line.slice(0, 600));
    }
  }
  // Dropped, never bypassed: a held connection that lost its agent is closed, not carried on in
  // plaintext. The probes after the restart go through the new agent (the policy holds: breaches 0).
  t.ok(r.held.far.dropped.length + r.held.near.dropped.length > 0, 'connections carried by the killed agent were closed');
});

t.test('network partition between the nodes, then heal', async (t) => {
  const n1 = node('node-1');
  const n2 = node('node-2');
  // Fresh held connections: the previous row closed some.
  for (const h of [far, near]) h.kill();
  far = new Holder(netnsOf(NS, 'far'), `${serverIP}:${ECHO_PORT}`, FAR);
  near = new Holder(netnsOf(NS, 'near'), `${serverIP}:${ECHO_PORT}`, NEAR);
  holders.push(far, near);
  await far.ready();
  await near.ready();
  const agent2 = pidOf('weft-agent/node-2');
  const fdsBefore = fds(agent2);
  const rssBefore = rssMb(agent2);
  partition = `weft_chaos_${randomBytes(3).toString('hex')}`;
  // 2 s: the held connections count as dropped after 5 s without an echo (held-connections.ts),
  // and TCP's own retransmission backoff (0.2, 0.6, 1.4, 3.0, 6.2 s after the first loss) would
  // let a blackout just over 3 s stall a healthy connection past that: the row would measure the
  // kernel's timer, not the mesh.
  const r = await row('node-1 and node-2 partitioned for 2 s', async () => {
    const set = `{ ${n1.ip}, ${n1.podCIDR} }`;
    const rules = [
      `add table inet ${partition}`,
      `add chain inet ${partition} block_out { type filter hook output priority 0; }`,
      `add chain inet ${partition} block_in { type filter hook input priority 0; }`,
      `add chain inet ${partition} block_fwd { type filter hook forward priority 0; }`,
      `add rule inet ${partition} block_out ip daddr ${set} drop`,
      `add rule inet ${partition} block_in ip saddr ${set} drop`,
      `add rule inet ${partition} block_fwd ip daddr ${set} drop`,
      `add rule inet ${partition} block_fwd ip saddr ${set} drop`,
    ].join('\n');
    const add = await sh('ip', ['netns', 'exec', n2.netns, 'nft', '-f', '-'], { input: rules });
    if (add.code !== 0) throw new Error(`partition: ${add.stderr}`);
    t.notOk(await connects('far'), 'during the partition a new tunnelled connection fails');
    await sleep(2000);
    await sh('ip', ['netns', 'exec', n2.netns, 'nft', 'delete', 'table', 'inet', partition]);
    partition = '';
  });
  checkRow(t, r, { keepsHeld: true });
  const fdsAfter = fds(agent2);
  t.ok(fdsAfter <= fdsBefore + 10, `node-2's agent holds no leaked descriptors (${fdsBefore} -> ${fdsAfter})`);
  rows.push(`| (leak check, node-2's agent across the partition) | fds ${fdsBefore} -> ${fdsAfter}, RSS ${rssBefore.toFixed(0)} -> ${rssMb(agent2).toFixed(0)} MB | | | |`);
});

t.test('the chaos table', async (t) => {
  t.comment(['FIGURES: chaos table', '| fault | held connections | new connections work again (far / near) | probes failed | policy breaches |', '|---|---|---|---|---|', ...rows].join('\n'));
  t.equal(breaches.length, 0, 'no policy breach over the whole suite');
});
