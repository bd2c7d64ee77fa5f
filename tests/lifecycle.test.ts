// End to end: the Helm lifecycle on a real playground. `weft dev up` installs the chart with
// `helm install`; on simulated nodes the controller and agents run from its pod templates with its
// ServiceAccounts (playground/chart-runner.ts), on real nodes (WEFT_TEST_RUNTIME=real) as its
// DaemonSet's and Deployment's pods. This suite then drives the release the way an
// operator would — `helm test`, `helm upgrade`, `helm uninstall`, `helm install` again — and checks
// what each must do to the nodes and to the traffic of meshed pods.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { deployEchoPods } from './helpers/echo-pods.ts';
import { Holder } from './helpers/holder.ts';
import { UNINSTALLED_STUB } from '../agent/cni/uninstalled-stub.ts';
import { Playground, REPO, eventually, pod, sh, uniqueName, type DevStatusJson } from './helpers/playground.ts';
import { BUSYBOX_IMAGE } from '../playground/images.ts';

const pg = new Playground(uniqueName('lc'));
const REAL = pg.runtime === 'real';
// Real nodes: up with image imports, then four helm operations through the kubelet: 637 s measured at load 19-31.
if (REAL) t.setTimeout(1_200_000);
const holders: Holder[] = [];
t.teardown(async () => {
  clearInterval(logKeeper);
  for (const h of holders) h.kill();
  // Both nodes' agent logs when anything failed: what each agent process decided at its stop is
  // the first thing to read (a chain entry left behind after the uninstall was undiagnosable
  // without them once).
  if (!t.passing() && dir) {
    if (REAL) keepAgentLogs();
    else for (const node of ['node-1', 'node-2']) keptLogs.set(`${node} agent.log`, readFileSync(`${dir}/nodes/${node}/weft/agent.log`, 'utf8'));
    for (const [name, text] of keptLogs) {
      const lines = text.trimEnd().split('\n');
      t.comment(`agent log ${name}${lines.length > AGENT_LOG_LINES ? ` (last ${AGENT_LOG_LINES} of ${lines.length} lines)` : ''}:\n${lines.slice(-AGENT_LOG_LINES).join('\n')}`);
    }
  }
  await pg.down();
});

/**
 * Real nodes: the agent pods' logs, copied as they grow. The kubelet deletes a pod's log with
 * the pod, so the logs of the uninstall, the ones that matter, are gone by the time a test fails.
 */
const keptLogs = new Map<string, string>();
const AGENT_LOG_LINES = 300;
let logKeeper: NodeJS.Timeout | undefined;
function keepAgentLogs(): void {
  for (const node of ['node-1', 'node-2']) {
    const base = `${dir}/nodes/${node}/var-log/pods`;
    // The pre-delete hook's Job pod too: when it stopped waiting for the agents matters as much.
    const pods = existsSync(base) ? readdirSync(base).filter((d) => d.startsWith(`${SYSTEM}_weft-agent-`) || d.startsWith(`${SYSTEM}_weft-uninstall-`)) : [];
    for (const pod of pods) {
      const container = pod.startsWith(`${SYSTEM}_weft-agent-`) ? 'agent' : 'uninstall';
      try {
        for (const f of readdirSync(join(base, pod, container))) keptLogs.set(`${node} ${pod}/${container}/${f}`, readFileSync(join(base, pod, container, f), 'utf8'));
      } catch {
        // The pod and its log went between the listing and the read: its last copy stays.
      }
    }
  }
}

type LogLine = { ts?: string; msg?: string; reason?: string; state?: string; was?: string; error?: string; errors?: string[]; rechained?: string[]; daemonSet?: unknown; successor?: unknown };
const logLines = (text: string): LogLine[] =>
  text.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l.slice(l.indexOf('{'))) as LogLine];
    } catch {
      return [];
    }
  });
const hms = (ts?: string) => ts?.slice(11, 23) ?? '?';

/**
 * Real nodes, for the uninstall checks' own messages (a CI report keeps a failing assertion's
 * name whole and may cut what follows): for each agent process of `node` that was running when
 * `helm uninstall` began, when it got its stop signal and what its DaemonSet watch knew then,
 * when its watch saw the DaemonSet go, and its stop decision with the reason; then when the
 * pre-delete hook stopped waiting.
 */
function stopFacts(node: string, since: string): string {
  if (!REAL) return '';
  keepAgentLogs();
  const out: string[] = [];
  for (const [name, text] of keptLogs) {
    if (!name.startsWith(`${node} `) || !name.includes('/agent/')) continue;
    const lines = logLines(text);
    if (lines.some((l) => l.msg === 'drained' && (l.ts ?? '') < since)) continue;
    const pod = /weft-agent-([a-z0-9]+)_/.exec(name)?.[1] ?? name;
    const at = (msg: string) => lines.find((l) => l.msg === msg);
    const signal = at('stop signal');
    const seen = lines.filter((l) => l.msg === 'agent DaemonSet' && (l.state === 'deleting' || l.state === 'deleted'))[0];
    const decision = lines.find((l) => l.msg === 'leaving the node meshed' || l.msg === 'Weft is being removed from the cluster: taking it off the node');
    const waited = at('waiting for the successor to decide about the node');
    const confirmFailed = at('checking the agent DaemonSet at stop failed; the watch state stands');
    const done = at('uninstalled: Weft is off this node');
    out.push(
      `[agent ${pod} started ${hms(at('agent started')?.ts)}: ` +
        (signal ? `SIGTERM ${hms(signal.ts)} with watch ${JSON.stringify(signal.daemonSet)}` : 'no stop signal logged') +
        `; watch saw the DaemonSet ${seen ? `${seen.state} at ${hms(seen.ts)}` : 'never go'}` +
        (confirmFailed ? `; list at stop failed (${confirmFailed.error})` : '') +
        (waited ? `; waited for its successor from ${hms(waited.ts)}` : '') +
        `; decided ${decision ? `${hms(decision.ts)} ${decision.msg === 'leaving the node meshed' ? 'LEAVE MESHED' : 'UNINSTALL'} (${decision.reason})` : 'nothing'}` +
        (done ? `; uninstalled ${hms(done.ts)} errors ${JSON.stringify(done.errors)} rechained ${JSON.stringify(done.rechained)}` : '') +
        ']',
    );
  }
  for (const [name, text] of keptLogs) {
    if (!name.includes('/uninstall/')) continue;
    const end = logLines(text).find((l) => /every agent pod|gave up waiting/.test(l.msg ?? ''));
    const deleted = logLines(text).find((l) => (l.msg ?? '').startsWith('agent DaemonSet deleted'));
    out.push(`[hook: DaemonSet deleted ${hms(deleted?.ts)}, ended ${end ? `${hms(end.ts)} '${end.msg}'` : 'not yet'}]`);
  }
  return `${node}: ${out.join(' ') || '(no agent log kept)'}`;
}

const NS = 'lifecycle';
const SYSTEM = 'weft-system';
let status: DevStatusJson;
let dir = '';
let serverIP = '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const netnsOf = (name: string) => status.pods.find((p) => p.namespace === NS && p.name === name)?.netnsPath ?? '';
const nodeNetns = (node: string) => `wpg-${pg.name}-${node}`;
const hold = (podName: string, count: number) => {
  const h = new Holder(netnsOf(podName), `${serverIP}:9000`, count);
  holders.push(h);
  return h;
};

async function helm(args: string[], timeoutMs = 180_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return sh('env', [`KUBECONFIG=${status.kubeconfig}`, join(dirname(status.kubectl), 'helm'), ...args], { timeoutMs });
}

/** The install arguments of playground/mesh.ts installArgs, as an operator would type them. */
function installArgs(): string[] {
  const api = new URL(status.apiServer);
  // Real nodes: the chart's defaults, with local images (no registry); simulated: the values that hand the pods to the chart-runner.
  const values = REAL ? ['--set', 'image.pullPolicy=Never', '--set', `helmTest.image=${BUSYBOX_IMAGE}`] : ['-f', join(REPO, 'playground/values.yaml')];
  return ['weft', join(REPO, 'helm/weft'), '-n', SYSTEM, ...values, '--set-file', `ca.trustBundle=${dir}/pki/mesh-ca.crt`, '--set', `agent.cni.kubeAPI=https://${api.host}`];
}

/** kubectl authenticated by a bare token (the client certificate of the admin kubeconfig would win otherwise). */
function kubectlAs(token: string, args: string[]) {
  return sh(status.kubectl, ['--kubeconfig=/dev/null', `--server=${status.apiServer}`, `--certificate-authority=${dir}/pki/ca.crt`, `--token=${token}`, ...args]);
}

/** The agent serving a node's admin endpoint: its PID (in its PID namespace on real nodes) and start time, which tells agents apart on both runtimes. */
async function agentOf(node: string): Promise<{ pid: number; startedAt: string } | undefined> {
  const r = await sh('ip', ['netns', 'exec', nodeNetns(node), 'curl', '-sf', 'http://127.0.0.1:15000/node']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { pid: number; startedAt: string }) : undefined;
}

function agentLog(node: string, msg: string, pid: number): { ts: string }[] {
  return readFileSync(`${dir}/nodes/${node}/weft/agent.log`, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as { ts: string; pid?: number })
    .filter((e) => e.pid === pid);
}

/** Real nodes: the Weft pods in weft-system, by name prefix. */
async function systemPods(): Promise<{ metadata: { name: string; creationTimestamp: string; deletionTimestamp?: string; deletionGracePeriodSeconds?: number }; spec: { nodeName: string } }[]> {
  const r = await pg.kubectl(['-n', SYSTEM, 'get', 'pods', '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { items: [] }).items : [];
}

const conflist = (node: string) => JSON.parse(readFileSync(`${dir}/nodes/${node}/root/etc/cni/net.d/10-playground.conflist`, 'utf8')) as { plugins: { type: string }[] };
const weftTable = async (node: string) => (await sh('ip', ['netns', 'exec', nodeNetns(node), 'nft', 'list', 'table', 'inet', 'weft'])).code === 0;
const healthy = async (url: string) => fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);

t.before(async () => {
  status = await pg.start(2);
  dir = dirname(status.kubeconfig);
  ({ status, serverIP } = await deployEchoPods(pg, NS, { far: 'node-2' }));
  if (REAL) logKeeper = setInterval(keepAgentLogs, 300);
});

t.test('installed by helm install; each component runs as its own ServiceAccount, with the chart RBAC only', async (t) => {
  const list = JSON.parse((await helm(['list', '-n', SYSTEM, '-o', 'json'])).stdout) as { name: string; status: string; revision: string }[];
  t.match(list, [{ name: 'weft', status: 'deployed', revision: '1' }], 'release weft, deployed, revision 1');
  if (REAL) {
    const agents = await pg.weftPods('agent');
    t.same(new Set(agents.map((p) => p.spec.nodeName)), new Set(['node-1', 'node-2']), "the DaemonSet's agent pods run on both nodes");
    t.ok((await pg.weftPods('controller')).length >= 1, "the Deployment's controller pods run");
  } else {
    t.same(
      status.weft.map((w) => w.process),
      ['weft-agent/node-1', 'weft-agent/node-2', 'weft-controller'],
      'weft dev status lists the processes run from its Deployment and DaemonSet',
    );
  }

  const controllerToken = await pg.weftToken('controller');
  const agentToken = await pg.weftToken('agent', 'node-1');
  for (const [who, token] of [
    ['weft-controller', controllerToken],
    ['weft-agent', agentToken],
  ] as const) {
    const whoami = await kubectlAs(token, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    t.equal(whoami.stdout, `system:serviceaccount:${SYSTEM}:${who}`, `${who} runs with its own ServiceAccount's token`);
    for (const [verb, what] of [
      ['*', '*'],
      ['get', 'secrets'],
      ['create', 'pods'],
    ]) {
      const r = await kubectlAs(token, ['auth', 'can-i', verb as string, what as string, '-A']);
      t.equal(r.stdout.trim(), 'no', `${who} cannot ${verb} ${what} cluster-wide`);
    }
  }
});

t.test('helm test proves meshed traffic on the playground', async (t) => {
  const r = await helm(['test', 'weft', '-n', SYSTEM, '--timeout', '150s']);
  t.equal(r.code, 0, `helm test passed: ${r.stderr.trim()}`);
  t.match(r.stdout, /TEST SUITE:\s+weft-test-client[\s\S]*?Phase:\s+Succeeded/, 'the client test pod succeeded');
});

/**
 * The drain of the agents the upgrade below starts (WEFT_DRAIN_SECONDS, also the mark of the
 * upgraded template). They carry the uninstall test's held connections, and on real nodes the roll
 * that test starts signals them before `helm uninstall` does (below): the drain must outlast that
 * roll, the uninstall and its hook, or its deadline, not the uninstall, resets what they carry.
 */
const DRAIN_SECONDS = 300;

t.test('helm upgrade rolls the agents one node at a time and drops no established connection', async (t) => {
  const far = hold('far', 30);
  t.same(await far.ready(), { type: 'ready', held: 30 }, '30 meshed connections from node-2 to the server on node-1');
  const before = { 'node-1': await agentOf('node-1'), 'node-2': await agentOf('node-2') };
  const oldPods = REAL ? await systemPods() : [];

  const r = await helm(['upgrade', 'weft', join(REPO, 'helm/weft'), '-n', SYSTEM, '--reuse-values', '--set', `agent.drainSeconds=${DRAIN_SECONDS}`]);
  t.equal(r.code, 0, `helm upgrade: ${r.stderr.trim()}`);
  const after: Record<string, { pid: number; startedAt: string } | undefined> = {};
  for (const node of ['node-1', 'node-2'] as const) {
    await eventually(async () => String((after[node] = await agentOf(node)) !== undefined && after[node]?.startedAt !== before[node]?.startedAt), 'true', 90_000);
    t.not(after[node]?.startedAt, before[node]?.startedAt, `${node}: a new agent serves the node`);
    // The new agent's environment, read from the host: its PID there is the supervisor's (simulated) or found by its pod's cgroup (real).
    const hostPid = REAL ? (await pg.weftPids('agent', node)).find((pid) => readFileSync(`/proc/${pid}/environ`, 'utf8').includes(`WEFT_DRAIN_SECONDS=${DRAIN_SECONDS}`)) : after[node]?.pid;
    const environ = hostPid ? readFileSync(`/proc/${hostPid}/environ`, 'utf8').split('\0') : [];
    t.ok(environ.includes(`WEFT_DRAIN_SECONDS=${DRAIN_SECONDS}`), `${node}: the new agent runs the upgraded template (WEFT_DRAIN_SECONDS=${DRAIN_SECONDS})`);
  }
  if (REAL) {
    // One node at a time, in whichever order the DaemonSet controller picks (node-2 first was
    // seen): the second node's new pod was created only after the first node's old pod was told
    // to go (deleted once the first node's new pod was Ready: maxSurge 1, maxUnavailable 0).
    const pods = await systemPods();
    const agentPods = (ps: typeof pods) => ps.filter((p) => p.metadata.name.startsWith('weft-agent-'));
    const oldNames = new Set(agentPods(oldPods).map((p) => p.metadata.name));
    const rolled = (node: string) => {
      // deletionTimestamp is when the grace period ends: the deletion itself was that much earlier.
      const old = agentPods(pods).find((p) => oldNames.has(p.metadata.name) && p.spec.nodeName === node)?.metadata;
      const deleted = old?.deletionTimestamp ? new Date(Date.parse(old.deletionTimestamp) - (old.deletionGracePeriodSeconds ?? 0) * 1000).toISOString().replace(/\.\d+Z$/, 'Z') : '';
      const created = agentPods(pods).find((p) => !oldNames.has(p.metadata.name) && p.spec.nodeName === node)?.metadata.creationTimestamp ?? '';
      return { node, deleted, created };
    };
    const [first, second] = [rolled('node-1'), rolled('node-2')].sort((a, b) => a.created.localeCompare(b.created));
    t.ok(
      first && second && second.created && (!first.deleted || second.created >= first.deleted),
      `${second?.node} rolled after ${first?.node} had (${first?.node}'s old pod deleted ${first?.deleted || 'and gone'} ≤ ${second?.node}'s new pod ${second?.created})`,
    );
  } else {
    // One node at a time: node-2's new agent started only after node-1's old one was told to drain,
    // which happens once node-1's new agent is ready.
    const node1Swapped = agentLog('node-1', 'draining', before['node-1']?.pid ?? 0)[0]?.ts ?? '';
    const node2Started = agentLog('node-2', 'agent started', after['node-2']?.pid ?? 0)[0]?.ts ?? '';
    t.ok(node1Swapped && node2Started && node2Started >= node1Swapped, `node-2 rolled after node-1 had (old agent draining ${node1Swapped} ≤ node-2's new agent ${node2Started})`);
  }

  await sleep(2000);
  const report = await far.report();
  t.same(report.dropped, [], 'no held connection dropped across the rolling upgrade');
  t.equal(report.probes.failed, 0, `every new connection during the upgrade worked (${report.probes.ok})`);
  t.comment(`FIGURES: helm upgrade: ${report.dropped.length} of 30 held connections dropped; ${report.probes.ok} new connections, ${report.probes.failed} failed; longest echo gap ${report.maxGapMs} ms`);
  await far.close();
});

t.test('helm uninstall cleans every node, and meshed pods keep their networking', async (t) => {
  const far = hold('far', 5);
  await far.ready();
  // The earliest any agent carrying `far` can have been signalled: the roll below, or the uninstall.
  let rollAt: number | undefined;
  if (REAL) {
    // Uninstalled in the middle of a roll, as a CI run once did right after the upgrade above:
    // the first node's new agent has taken the node over while its old process still runs (its
    // pod waiting out minReadySeconds, or already deleted and draining), so the uninstall stops
    // both, and an old process that sees a successor and the DaemonSet going waits for that
    // successor's decision (agent/kube/stop-decision.ts): exactly one of them takes Weft off. Its
    // chain watcher once put weft-cni back, and both once left the node meshed
    // (agent/uninstall-race.test.ts); the checks below catch either.
    // minReadySeconds=600 starts the roll on both nodes at once (the old pods, not available
    // under the new spec, are replaced at once) and never deletes an old pod for its successor's
    // availability. It does not keep the old pods: one whose successor is still starting answers
    // the probe NotReady (for the successor, agent/main.ts), and the DaemonSet controller deletes
    // an old pod that is not Ready beside a new one. Then its process drains from that moment,
    // before helm uninstall begins: the held connections are safe for DRAIN_SECONDS from the roll.
    // This roll can also begin before the one above has deleted its last old pod: that node then
    // has two old pods, and the DaemonSet controller keeps the oldest and deletes the other, the
    // previous roll's new pod, seconds after it started (its process drains too).
    const before = { 'node-1': await agentOf('node-1'), 'node-2': await agentOf('node-2') };
    rollAt = performance.now();
    const roll = await helm(['upgrade', 'weft', join(REPO, 'helm/weft'), '-n', SYSTEM, '--reuse-values', '--set', 'agent.minReadySeconds=600', '--set-string', `agent.podAnnotations.weft-test-roll=${Date.now()}`]);
    t.equal(roll.code, 0, `helm upgrade to start a roll: ${roll.stderr.trim()}`);
    let first = '';
    for (const deadline = Date.now() + 90_000; !first && Date.now() < deadline; await sleep(200)) {
      for (const node of ['node-1', 'node-2'] as const) {
        const now = await agentOf(node);
        if (now && now.startedAt !== before[node]?.startedAt) first = node;
      }
    }
    t.ok(first, `a new agent took a node over (${first}): helm uninstall now, mid-roll`);
  }
  const uninstallAt = new Date().toISOString();
  const uninstallStarted = performance.now();
  const facts = () => `${stopFacts('node-1', uninstallAt)} ${stopFacts('node-2', uninstallAt)}`.trim();
  const r = await helm(['uninstall', 'weft', '-n', SYSTEM]);
  t.equal(r.code, 0, `helm uninstall: ${r.stderr.trim()}`);
  // New connections work throughout, through the mesh and then directly; the ones the agents
  // carried are still carried while the agents drain. A drain resets what is still open at its
  // deadline (DRAIN_SECONDS after the agent's signal), as documented: the check is only about the
  // uninstall if it comes before that, so it says when it came.
  const during = await far.report();
  const sinceSignal = (performance.now() - (rollAt ?? uninstallStarted)) / 1000;
  const timing = `${sinceSignal.toFixed(1)} s after the ${rollAt === undefined ? 'uninstall' : 'roll'} began (helm uninstall took ${((performance.now() - uninstallStarted) / 1000).toFixed(1)} s)`;
  t.comment(`FIGURES: helm uninstall: held connections checked ${timing}; agents' drain ${DRAIN_SECONDS} s`);
  t.ok(sinceSignal < DRAIN_SECONDS, `the held connections are checked within the drain of the agents carrying them (${timing})`);
  const duringFacts = during.probes.failed > 0 || during.dropped.length > 0 ? ` — ${facts()}` : '';
  t.equal(during.probes.failed, 0, `no new connection failed during the uninstall (${during.probes.ok} ok; ${JSON.stringify(during.probes.failures)})${duringFacts}`);
  t.same(during.dropped, [], `the connections the agents carried are still open while they drain${duringFacts}`);
  await far.close();
  if (REAL) {
    // The hook (agent/pre-delete.ts) ran: its Job is deleted once it succeeds, its events stay.
    const events = await pg.kubectl(['-n', SYSTEM, 'get', 'events', '--field-selector', 'involvedObject.kind=Job,involvedObject.name=weft-uninstall', '-o', 'jsonpath={.items[*].reason}']);
    t.match(events.stdout, /Completed/, `helm ran the pre-delete hook Job to completion (events: ${events.stdout.trim()})`);
  }
  for (const node of ['node-1', 'node-2']) {
    const tableGone = await eventually(async () => String(await weftTable(node)), 'false', 30_000);
    const chained = conflist(node).plugins.some((p) => p.type === 'weft-cni');
    // The decisive facts first, in the failing assertion's own message.
    const why = tableGone !== 'false' || chained ? ` — ${stopFacts(node, uninstallAt)}` : '';
    t.equal(tableGone, 'false', `${node}: the inet weft nftables table is gone${why}`);
    t.notOk(chained, `${node}: weft-cni is out of the CNI chain${why}`);
    t.same(
      conflist(node).plugins.map((p) => p.type),
      ['ptp'],
      `${node}: the primary CNI's own configuration is left as it was`,
    );
    const plugin = `${dir}/nodes/${node}/root/opt/cni/bin/weft-cni`;
    // Named by size and digest, not shown: when the real plugin is still there, its text would be
    // the assertion's diff (a quarter of a million lines of a binary in the log).
    const found = existsSync(plugin) ? readFileSync(plugin) : undefined;
    const what = found ? `${found.length} bytes, sha256 ${createHash('sha256').update(found).digest('hex').slice(0, 16)}` : 'missing';
    const stub = found?.toString('utf8') === UNINSTALLED_STUB;
    t.ok(stub, `${node}: the weft-cni executable is replaced by its tear-down stub (found: ${what})${stub ? '' : ` — ${stopFacts(node, uninstallAt)}`}`);
  }
  for (const node of ['node-1', 'node-2']) {
    const ip = status.nodes.find((n) => n.name === node)?.ip ?? '';
    t.equal(await eventually(async () => String(await healthy(`http://${ip}:15021/healthz/ready`)), 'false', 40_000), 'false', `${node}: its agent has exited`);
  }
  if (REAL) {
    t.equal(await eventually(async () => String((await systemPods()).length), '0', 60_000), '0', 'the agent and controller pods are gone');
    // What each agent process decided at its stop: during an uninstall right after an upgrade, a
    // node can have two (the replaced one still waiting out minReadySeconds, and its successor).
    keepAgentLogs();
    for (const [name, text] of keptLogs) {
      if (!name.includes('/agent/')) continue;
      const stops = text
        .split('\n')
        .map((l) => l.slice(l.indexOf('{')))
        .filter((l) => /"msg":"(stop signal|waiting for the successor to decide about the node|leaving the node meshed|Weft is being removed from the cluster: taking it off the node|uninstalled: Weft is off this node|drained)"/.test(l));
      t.comment(`stop of ${name}: ${stops.join(' ') || '(no stop logged)'}`);
    }
    // The same, as a failing check above would have named it.
    t.comment(`stop facts: ${facts()}`);
  } else {
    t.equal(await eventually(async () => String(await healthy(`http://${new URL(status.apiServer).hostname}:15014/readyz`)), 'false', 20_000), 'false', 'the controller has exited');
    t.equal(await eventually(async () => JSON.stringify((await pg.status()).weft), '[]', 10_000), '[]', 'and weft dev status lists no Weft process');
  }

  const rbac = await pg.kubectl(['get', 'clusterrole', 'weft-agent', 'weft-controller', '--ignore-not-found', '-o', 'name']);
  t.equal(rbac.stdout.trim(), '', 'the chart RBAC is gone');
  const crds = await pg.kubectl(['get', 'crd', 'accesspolicies.weft.dev', 'meshtlspolicies.weft.dev', '-o', 'name']);
  t.equal(crds.code, 0, 'the CRDs stay (Helm never deletes crds/), and with them every policy');

  // A pod started now gets its network from the primary CNI alone and reaches the server.
  await pg.apply(pod(NS, 'late', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(NS, ['late']);
  status = await pg.status();
  const late = hold('late', 1);
  t.same(await late.ready(), { type: 'ready', held: 1 }, 'a pod created after the uninstall reaches the server');
  await late.close();
  const direct = hold('far', 1);
  t.same(await direct.ready(), { type: 'ready', held: 1 }, 'and so does a pod meshed before it');
  await direct.close();

  // A pod set up while weft-cni was chained is torn down with that configuration by runtimes
  // that replay it (CRI-O, and the playground's kubelet, as the CNI spec has it): it must still go.
  await pg.kubectl(['-n', NS, 'delete', 'pod', 'far', '--wait=false']);
  const gone = await eventually(async () => (await pg.kubectl(['-n', NS, 'get', 'pod', 'far', '--ignore-not-found', '-o', 'name'])).stdout.trim(), '', 30_000);
  t.equal(gone, '', 'a pod meshed before the uninstall can still be deleted (its CNI DEL succeeds)');
});

t.test('helm install again brings the mesh back', async (t) => {
  const r = await helm(['install', ...installArgs()]);
  t.equal(r.code, 0, `helm install: ${r.stderr.trim()}`);
  for (const n of status.nodes) {
    t.equal(await eventually(async () => String(await healthy(`http://${n.ip}:15021/healthz/ready`)), 'true', 60_000), 'true', `${n.name}: an agent is ready again`);
    t.ok(conflist(n.name).plugins.some((p) => p.type === 'weft-cni'), `${n.name}: weft-cni is chained again`);
  }
  await pg.apply(pod(NS, 'again', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(NS, ['again']);
  status = await pg.status();
  t.ok(status.pods.find((p) => p.name === 'again')?.meshed, 'a pod started after the re-install is meshed');
  const again = hold('again', 1);
  await again.ready();
  const carried = await sh('ip', ['netns', 'exec', nodeNetns('node-2'), 'curl', '-sf', 'http://127.0.0.1:15000/connections']);
  type Open = { info: { source?: { name: string } } };
  const open = carried.code === 0 ? (JSON.parse(carried.stdout) as Open[]) : [];
  t.ok(open.some((c) => c.info.source?.name === 'again'), "node-2's agent carries its connection");
  await again.close();
});
