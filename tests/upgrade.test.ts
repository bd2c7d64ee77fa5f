// End to end: hitless agent upgrades on a real playground. Established meshed connections — across
// nodes through HBONE tunnels, and on one node — keep exchanging data while the agent of each node
// is upgraded in place the way the chart's DaemonSet does it (`weft dev restart-agent`: the new
// agent process first, ready, then SIGTERM to the old one, which drains). The measure is the
// number of connections dropped per agent restart; the goal is 0. The same harness then shows
// that a plain restart (the agent killed) does drop them, so the count can fail.
// On real nodes (WEFT_TEST_RUNTIME=real) the upgrade is the chart's own: `helm upgrade` rolls the
// agent DaemonSet (maxSurge 1, maxUnavailable 0: the new pod Ready first, then the old one gets
// SIGTERM and drains), and the old pods' "drained" lines come from `kubectl logs -f`.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deployEchoPods } from './helpers/echo-pods.ts';
import { Holder } from './helpers/holder.ts';
import { Playground, REPO, sh, uniqueName, weft, type DevStatusJson } from './helpers/playground.ts';

const pg = new Playground(uniqueName('up'));
const REAL = pg.runtime === 'real';
// Real nodes: up, image import and a two-node rolling update take ~100 s more than the simulated run.
if (REAL) t.setTimeout(600_000);
const holders: Holder[] = [];
const followers: { kill(): void }[] = [];
t.teardown(async () => {
  for (const h of holders) h.kill();
  for (const f of followers) f.kill();
  await pg.down();
});

const NS = 'upgrade';
const FAR = 50; // connections from node-2 to the server on node-1: tunnelled
const NEAR = 10; // connections from node-1 to the server on node-1: same node
let status: DevStatusJson;
let serverIP = '';
const netnsOf = (name: string) => status.pods.find((p) => p.namespace === NS && p.name === name)?.netnsPath ?? '';
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

t.test('accept-queue migration is on in both nodes, set by Weft (the playground leaves it off)', async (t) => {
  // Real nodes: the chart's node-sysctls init container; simulated: the agent, a host process there.
  for (const node of ['node-1', 'node-2']) {
    const v = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-${node}`, 'sysctl', '-n', 'net.ipv4.tcp_migrate_req']);
    t.equal(v.stdout.trim(), '1', `${node}: net.ipv4.tcp_migrate_req=1`);
  }
});

t.test('upgrading both agents drops no established connection; new connections keep working', { skip: REAL && 'real nodes: the helm upgrade test below' }, async (t) => {
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

const agentPods = () => pg.weftPods('agent');

/** `kubectl logs -f` of a pod, collected until it ends (the pod's container exits). */
function follow(pod: string): { lines: () => Record<string, unknown>[]; ended: Promise<void>; kill(): void } {
  const child = spawn(status.kubectl, ['--kubeconfig', status.kubeconfig, '-n', 'weft-system', 'logs', '-f', pod], { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (text += d));
  const f = {
    lines: () => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    ended: new Promise<void>((r) => child.once('exit', () => r())),
    kill: () => void child.kill('SIGKILL'),
  };
  followers.push(f);
  return f;
}

/**
 * What a stuck roll leaves to read. `summary` is one line, for the failing assertion's own name
 * (a CI report shows failing names whole and may cut the comments under them): the DaemonSet
 * controller's view (status, its last decision and error on this DaemonSet) and each pod's
 * readiness. `detail` adds what each agent process says of itself and the new pods' log tails.
 */
async function rollDiagnostics(oldNames: Set<string>): Promise<{ summary: string; detail: string }> {
  const out: string[] = [];
  const brief: string[] = [];
  const ds = await pg.kubectl(['-n', 'weft-system', 'get', 'ds', 'weft-agent', '-o', 'json']);
  try {
    const d = JSON.parse(ds.stdout) as { metadata: { generation: number }; status: Record<string, unknown> };
    const st = d.status;
    brief.push(`ds gen ${d.metadata.generation} observed ${String(st.observedGeneration)} desired ${String(st.desiredNumberScheduled)} ready ${String(st.numberReady)} available ${String(st.numberAvailable)} updated ${String(st.updatedNumberScheduled)}`);
    out.push(`DaemonSet status: ${JSON.stringify(st)}`);
  } catch {
    brief.push(`ds: ${ds.stderr.trim()}`);
  }
  const pods = await pg.kubectl(['-n', 'weft-system', 'get', 'pods', '-l', 'app.kubernetes.io/name=weft-agent', '-o', 'json']);
  type P = { metadata: { name: string; deletionTimestamp?: string; creationTimestamp: string }; spec: { nodeName: string }; status: { conditions?: { type: string; status: string; lastTransitionTime: string }[]; containerStatuses?: { restartCount: number; state: Record<string, unknown> }[] } };
  const items = pods.code === 0 ? (JSON.parse(pods.stdout) as { items: P[] }).items : [];
  const hhmmss = (ts: string | undefined) => ts?.slice(11, 19) ?? '?';
  for (const p of items) {
    const cond = (p.status.conditions ?? []).map((c) => `${c.type}=${c.status}@${c.lastTransitionTime}`).join(' ');
    const ready = p.status.conditions?.find((c) => c.type === 'Ready');
    const cs = p.status.containerStatuses?.[0];
    const age = oldNames.has(p.metadata.name) ? 'old' : 'new';
    brief.push(`${p.metadata.name} ${p.spec.nodeName} ${age} created ${hhmmss(p.metadata.creationTimestamp)} ready=${ready?.status ?? '?'}@${hhmmss(ready?.lastTransitionTime)}${p.metadata.deletionTimestamp ? ` deleting@${hhmmss(p.metadata.deletionTimestamp)}` : ''} restarts=${cs?.restartCount ?? '?'}`);
    out.push(`${p.metadata.name} ${p.spec.nodeName} ${age} created ${p.metadata.creationTimestamp}${p.metadata.deletionTimestamp ? ` deleting ${p.metadata.deletionTimestamp}` : ''} restarts=${cs?.restartCount ?? '?'} state=${JSON.stringify(cs?.state ?? {})} ${cond}`);
  }
  try {
    // The playground runs the DaemonSet controller with its decisions logged (controlplane.ts).
    const kcm = readFileSync(join(pg.dir, 'logs', 'kube-controller-manager.log'), 'utf8').split('\n').filter(Boolean);
    const mine = kcm.filter((l) => /weft-agent/.test(l));
    const short = (l: string | undefined) => (l ? l.replace(/^\S+ (\S+)\s+\d+ (\S+)\] /, '$1 $2 ').slice(0, 220) : 'none');
    const decision = mine.filter((l) => /surge candidate|is available|waiting|Pods to delete|daemon pods for daemon set|expectations/i.test(l)).at(-1);
    const error = mine.filter((l) => /^E|failed with|error/i.test(l)).at(-1);
    brief.push(`kcm last line ${short(kcm.at(-1)).slice(0, 16)}; last decision: ${short(decision)}; last error: ${short(error)}`);
    out.push(`kube-controller-manager on this DaemonSet (last 40 lines):\n${mine.slice(-40).join('\n')}`);
  } catch (e) {
    brief.push(`kcm log: ${(e as Error).message}`);
  }
  for (const n of ['node-1', 'node-2']) {
    const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-${n}`, 'curl', '-s', '-m', '3', 'http://127.0.0.1:15021/healthz/ready']);
    out.push(`${n} readiness probe: exit ${r.code} ${r.stdout.slice(0, 300)}`);
  }
  for (const p of items.filter((i) => !oldNames.has(i.metadata.name))) {
    // Its own lines, not the access log (which the probes fill).
    const logs = await pg.kubectl(['-n', 'weft-system', 'logs', p.metadata.name, '--tail', '2000']);
    const own = logs.stdout.split('\n').filter((l) => l && !l.includes('"kind":"access"')).slice(-25).join('\n');
    out.push(`--- ${p.metadata.name} (${p.spec.nodeName}) last log lines:\n${own}${logs.stderr}`);
  }
  return { summary: brief.join(' | '), detail: out.join('\n') };
}

type FollowedLogs = { pod: string; log: { lines: () => Record<string, unknown>[] } }[];

/** An agent pod's JSON log lines: from the log followed since before the roll, else from the API server. */
async function agentLines(pod: string, old: FollowedLogs): Promise<{ followed: boolean; lines: Record<string, unknown>[] }> {
  const f = old.find((o) => o.pod === pod);
  if (f) return { followed: true, lines: f.log.lines() };
  const r = await pg.kubectl(['-n', 'weft-system', 'logs', pod, '--tail', '20000']);
  return { followed: false, lines: r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/**
 * Every agent's log lines (old pods from their followers, the others from `kubectl logs`) within
 * 2 s of the given moments, access lines only when they record a failure or a refusal (an agent
 * that resets a connection it could not carry logs it as `"result":"refused"`).
 */
async function agentLinesAround(moments: number[], old: FollowedLogs): Promise<string> {
  const out: string[] = [];
  const near = (e: Record<string, unknown>) => {
    const ts = Date.parse(String(e.ts));
    return moments.some((m) => Math.abs(ts - m) <= 2000) && (e.kind !== 'access' || /error|reset|denied|fail|refused/i.test(JSON.stringify(e)));
  };
  for (const p of await agentPods()) {
    const { followed, lines } = await agentLines(p.metadata.name, old);
    out.push(`--- ${p.metadata.name} (${p.spec.nodeName}${followed ? ', old' : ''}):`, ...lines.filter(near).slice(-40).map((e) => JSON.stringify(e)));
  }
  return `${moments.map((m) => new Date(m).toISOString()).join(', ')}\n${out.join('\n')}`;
}

/**
 * Each agent's own lines (not the access log) as offsets from `t0`: when every process started,
 * bound its listeners, got its stop signal and drained, to set a failure's moment against. Printed
 * on passing runs too, so that a rare failure has normal runs to be compared with.
 */
async function agentTimeline(t0: number, old: FollowedLogs): Promise<string> {
  const out: string[] = [];
  for (const p of await agentPods()) {
    const { followed, lines } = await agentLines(p.metadata.name, old);
    for (const e of lines) {
      if (e.kind === 'access' || /^(certificate issued|pod enrolled|probe ports)/.test(String(e.msg))) continue;
      const at = (Date.parse(String(e.ts)) - t0) / 1000;
      if (!(at >= -5)) continue; // the old processes' start, long before
      const { ts: _ts, msg, level: _level, ...rest } = e;
      out.push(`${at >= 0 ? '+' : ''}${at.toFixed(3)}s ${p.spec.nodeName} ${followed ? 'old' : 'new'} ${String(msg)} ${JSON.stringify(rest).slice(0, 200)}`);
    }
  }
  return out.sort((a, b) => parseFloat(a) - parseFloat(b)).join('\n');
}

t.test('helm upgrade rolls the agent DaemonSet and drops no established connection; new connections keep working', { skip: !REAL && 'simulated nodes: weft dev restart-agent above' }, async (t) => {
  const far = hold('far', FAR);
  const near = hold('near', NEAR);
  t.same(await far.ready(), { type: 'ready', held: FAR }, `${FAR} connections from node-2 to the server on node-1`);
  t.same(await near.ready(), { type: 'ready', held: NEAR }, `${NEAR} connections on node-1`);
  type Open = { info: { direction: string; mode: string; source?: { name: string }; destination?: { name: string } } };
  const carried = await admin<Open[]>('node-1', '/connections');
  const count = (direction: string, mode: string, from: string) =>
    carried.filter((c) => c.info.direction === direction && c.info.mode === mode && c.info.source?.name === from && c.info.destination?.name === 'server').length;
  t.ok(count('inbound', 'tunnel', 'far') >= FAR, `node-1 holds the far connections as inbound tunnels (${count('inbound', 'tunnel', 'far')})`);
  t.ok(count('outbound', 'local', 'near') >= NEAR, `and the near ones as same-node deliveries (${count('outbound', 'local', 'near')})`);

  const old = await agentPods();
  t.equal(old.length, 2, 'one agent pod per node before the upgrade');
  const started = Object.fromEntries(await Promise.all(['node-1', 'node-2'].map(async (n) => [n, (await admin<{ startedAt: string }>(n, '/node')).startedAt] as const)));
  const logs = old.map((p) => ({ pod: p.metadata.name, node: p.spec.nodeName, log: follow(p.metadata.name) }));
  // An upgrade right after the install can stall in the DaemonSet controller (see the helper).
  await pg.agentDaemonSetSettled();
  const t0 = Date.now();
  // No --wait: the rollout completes only when the old pods are gone, and they drain until the
  // held connections close. From the traffic's side the upgrade is done once a new agent is Ready
  // on each node and each old one is terminating; that is when the held connections are checked.
  const up = await pg.helm(['-n', 'weft-system', 'upgrade', 'weft', join(REPO, 'helm/weft'), '--reuse-values', '--set', 'agent.drainSeconds=120']);
  t.equal(up.code, 0, `helm upgrade: ${up.stderr}`);
  const oldNames = new Set(old.map((p) => p.metadata.name));
  const isReady = (p: { status: { conditions?: { type: string; status: string }[] } }) => Boolean(p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  let rolled = false;
  for (const deadline = Date.now() + 240_000; !rolled && Date.now() < deadline; await sleep(500)) {
    const pods = await agentPods();
    const fresh = pods.filter((p) => !oldNames.has(p.metadata.name) && isReady(p));
    const stillOld = pods.filter((p) => oldNames.has(p.metadata.name) && !p.metadata.deletionTimestamp);
    rolled = new Set(fresh.map((p) => p.spec.nodeName)).size === 2 && stillOld.length === 0;
  }
  if (rolled) t.pass('the DaemonSet rolled: a new agent Ready on each node, the old ones terminating');
  else {
    const why = await rollDiagnostics(oldNames);
    t.fail(`the DaemonSet rolled: a new agent Ready on each node, the old ones terminating — it did not: ${why.summary}`);
    t.comment(`why the DaemonSet did not roll:\n${why.detail}`);
  }
  const rolledS = (Date.now() - t0) / 1000;
  await sleep(3000);
  const ready = (await agentPods()).filter((p) => !oldNames.has(p.metadata.name) && isReady(p));
  t.same(new Set(ready.map((p) => p.spec.nodeName)), new Set(['node-1', 'node-2']), `a new agent pod Ready on each node (${ready.map((p) => p.metadata.name).join(', ')})`);
  for (const n of ['node-1', 'node-2']) t.not((await admin<{ startedAt: string }>(n, '/node')).startedAt, started[n], `${n}: the admin endpoint is the new agent's`);
  const after = [await far.report(), await near.report()];
  // What the kubelet did to the new pods (a restart during the roll would explain refused probes).
  const restarts = await pg.kubectl(['-n', 'weft-system', 'get', 'pods', '-o', 'jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} restarts={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].lastState.terminated.finishedAt}{"\\n"}{end}']);
  const events = await pg.kubectl(['-n', 'weft-system', 'get', 'events', '--sort-by=.lastTimestamp', '-o', 'jsonpath={range .items[*]}{.lastTimestamp} {.involvedObject.name} {.reason} {.message}{"\\n"}{end}']);
  t.comment(`agent pods after the roll (t0 ${new Date(t0).toISOString()}):\n${restarts.stdout}\nevents:\n${events.stdout.split('\n').filter((l) => /weft-agent/.test(l)).slice(-30).join('\n')}`);
  const failedAt = after.flatMap((r) => r?.probes.failures.map((f) => Date.parse(f.at)) ?? []);
  if (failedAt.length > 0) t.comment(`the agents around each failed new connection:\n${await agentLinesAround(failedAt, logs)}`);
  t.comment(`agent timeline (seconds from t0):\n${await agentTimeline(t0, logs)}`);
  for (const [name, r] of [['far', after[0]], ['near', after[1]]] as const) {
    t.same(r?.dropped, [], `${name}: no held connection dropped`);
    t.equal(r?.open, r?.held, `${name}: all ${r?.held} still open`);
    t.equal(r?.probes.failed, 0, `${name}: every new connection during and after the rolling update worked (${JSON.stringify(r?.probes.failures)})`);
  }
  t.match([await far.verify(), await near.verify()], [{ ok: FAR, failed: 0 }, { ok: NEAR, failed: 0 }], 'every held connection still echoes afterwards');
  const dropped = after.reduce((a, r) => a + (r?.dropped.length ?? 0), 0);
  const probes = after.reduce((a, r) => ({ ok: a.ok + (r?.probes.ok ?? 0), failed: a.failed + (r?.probes.failed ?? 0) }), { ok: 0, failed: 0 });
  t.comment(
    `FIGURES (real nodes): held connections dropped by the DaemonSet rolling update: ${dropped} of ${FAR + NEAR}; ` +
      `longest pause between echoes: ${Math.max(...after.map((r) => r?.maxGapMs ?? 0))} ms (ping-pong every 100 ms); ` +
      `new connections during/after: ${probes.ok} ok, ${probes.failed} failed; helm upgrade to new agents Ready on both nodes: ${rolledS.toFixed(1)} s`,
  );

  // The held connections end: each old agent has nothing left, finishes its drain and exits.
  await far.close();
  await near.close();
  await Promise.race([Promise.all(logs.map((l) => l.log.ended)), sleep(60_000)]);
  for (const l of logs) {
    const drained = l.log.lines().find((e) => e.msg === 'drained');
    t.match(drained, { outcome: 'drained', connectionsReset: 0 }, `${l.node}: the old agent pod ${l.pod} drained: ${JSON.stringify(drained)}`);
  }
  const rollout = await pg.kubectl(['-n', 'weft-system', 'rollout', 'status', 'ds/weft-agent', '--timeout=120s'], undefined, 130_000);
  t.equal(rollout.code, 0, `and the rollout completes: ${rollout.stderr}`);
});

t.test('mutation check: an agent killed without a successor does drop connections', async (t) => {
  const far = hold('far', 20);
  await far.ready();
  if (REAL) {
    // SIGKILL to the agent container's processes; the kubelet restarts it, as a crash would.
    const pids = await pg.weftPids('agent', 'node-1');
    t.ok(pids.length > 0, `node-1's agent processes found on the host (${pids.join(', ')})`);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
  } else {
    const agent = (await admin<{ pid: number }>('node-1', '/node')).pid;
    process.kill(agent, 'SIGKILL'); // the supervisor starts a new one, as a plain restart would
  }
  await sleep(3000);
  const r = await far.report();
  t.ok(r.dropped.length > 0, `the kill dropped ${r.dropped.length} of 20 held connections (${r.dropped[0]?.reason ?? '-'})`);
  t.comment(`FIGURES: a plain kill-and-restart of node-1's agent dropped ${r.dropped.length} of 20 held connections`);
  far.kill();
});
