// Two agent processes on one node while Weft is uninstalled. In a CI run on real nodes, `helm
// uninstall` came right after `helm upgrade`: node-2's old agent pod was still waiting out
// minReadySeconds, so the garbage collector deleted it together with its successor's. The
// successor took Weft off the node (table, stub, chain entry); the old process, which had
// handed the node over and so left it meshed, still ran its chain watcher while it waited for
// that successor, and put weft-cni back into the chain within its debounce: the node kept a
// chain entry pointing at the stub, and new pods there stayed ContainerCreating.
// Here: the real watcher (cni/install.ts watchChain), the real uninstallCniPlugin and the real
// drainAndStop, on temporary CNI directories.
import t, { type Test } from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWeftCniSettings } from '../api/cni.ts';
import { isChained } from './cni/conflist.ts';
import { installCniPlugin, uninstallCniPlugin, watchChain, type ChainState } from './cni/install.ts';
import { UNINSTALLED_STUB } from './cni/uninstalled-stub.ts';
import { UNINSTALL_ACCEPT_MS, drainAndStop } from './drain.ts';
import { stopConfig, stoppingAgent } from './testing/stopping-agent.ts';

const PRIMARY = '{\n  "cniVersion": "1.0.0",\n  "name": "pods",\n  "plugins": [{ "type": "ptp", "ipam": { "type": "host-local", "subnet": "10.244.1.0/24" } }]\n}\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function node(t: Test) {
  const root = await mkdtemp(join(tmpdir(), 'weft-uninstall-race-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const [binDir, confDir, stateDir] = ['bin', 'net.d', 'state'].map((d) => join(root, d)) as [string, string, string];
  for (const d of [binDir, confDir, stateDir]) await mkdir(d);
  const source = join(root, 'weft-cni.src');
  await writeFile(source, '#!/bin/sh\n# the real plugin\n', { mode: 0o755 });
  const settings = parseWeftCniSettings({ agentSocket: join(root, 'cni.sock') });
  const primary = join(confDir, '10-pods.conflist');
  await writeFile(primary, PRIMARY);
  await installCniPlugin({ binarySource: source, binDir, confDir, settings });
  t.ok(isChained(await readFile(primary, 'utf8')), 'installed: weft-cni chained');
  return { binDir, confDir, stateDir, settings, primary };
}

t.test("another agent process's chain watcher does not put the entry back after an uninstall", async (t) => {
  const n = await node(t);
  // The replaced process's watcher, as NodeCni runs it, but quick: it reacts to the uninstall's
  // rename within 10 ms and re-checks every 30 ms besides.
  const results: (ChainState | Error)[] = [];
  const watcher = watchChain({ confDir: n.confDir, binDir: n.binDir, settings: n.settings, debounceMs: 10, resyncMs: 30, onResult: (r) => results.push(r) });
  t.teardown(() => watcher.close());
  const out = await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settings: n.settings, settleMs: 100 });
  t.same(out.unchained, [n.primary], 'the uninstall took the entry out');
  await sleep(400);
  t.equal(await readFile(n.primary, 'utf8'), PRIMARY, 'the primary configuration stays as the primary CNI wrote it');
  t.equal(await readFile(join(n.binDir, 'weft-cni'), 'utf8'), UNINSTALLED_STUB, 'the stub stays');
  t.match(results.at(-1), { state: 'uninstalled' }, 'the watcher reports the node uninstalled');
  t.notOk(results.some((r) => r instanceof Error), 'and no errors');
});

t.test('a chaining write already past its check when the stub lands is undone by the look after settleMs', async (t) => {
  const n = await node(t);
  const chainedText = await readFile(n.primary, 'utf8');
  // What a watcher that checked for the stub just before it was written still does: one rename.
  const late = sleep(40).then(() => writeFile(n.primary, chainedText));
  const out = await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settleMs: 150 });
  await late;
  t.same(out, { unchained: [n.primary], rechained: [n.primary], binary: 'stub' }, 'the entry put back was found and taken out again');
  t.equal(await readFile(n.primary, 'utf8'), PRIMARY);
});

t.test('a process that hands the node over stops keeping the chain at once, even while it waits for its successor', async (t) => {
  const n = await node(t);
  const watcher = watchChain({ confDir: n.confDir, binDir: n.binDir, settings: n.settings, debounceMs: 10, resyncMs: 30 });
  t.teardown(() => watcher.close());
  // The successor is draining (being deleted itself): the stopping process waits for it to go.
  let successorGone = false;
  const successor = { pid: 4242, version: 'test', startedAt: '', draining: true, notReady: 'draining' };
  const cfg = stopConfig({ stateDir: n.stateDir, drainMs: 2000, binDir: n.binDir, confDir: n.confDir });
  const agent = stoppingAgent(cfg, {
    agentSocket: { successor: async () => (successorGone ? undefined : successor), close: async () => undefined },
    cni: { watcher, close: () => watcher.close() },
  });
  const stopped = drainAndStop(agent, 'SIGTERM');
  // Meanwhile the successor takes the entry out (its own uninstall, or the primary CNI rewrote the
  // file: either way not this process's business any more).
  await sleep(50);
  await writeFile(n.primary, PRIMARY);
  await sleep(300);
  successorGone = true;
  await stopped;
  t.equal(await readFile(n.primary, 'utf8'), PRIMARY, 'the stopping process did not chain weft-cni again');
});

t.test('an agent that took Weft off its node still accepts for a while: the other nodes still tunnel to it', async (t) => {
  const n = await node(t);
  let drainCalled = 0;
  let uninstalled = 0;
  const cfg = stopConfig({ stateDir: n.stateDir, drainMs: 600, binDir: n.binDir, confDir: n.confDir });
  const agent = stoppingAgent(cfg, {
    redirector: { handOver: () => undefined, remove: async () => void (uninstalled = performance.now()) },
    ownDaemonSet: { confirm: async () => undefined, snapshot: () => ({ namespace: 'weft-system', name: 'weft-agent', state: 'deleting' }), close: async () => undefined },
    dataPlane: { openConnections: async () => [], drain: async () => void (drainCalled = performance.now()), close: async () => undefined },
  });
  await drainAndStop(agent, 'SIGTERM');
  t.ok(uninstalled > 0, 'the table was taken down');
  t.ok(drainCalled - uninstalled >= 550, `the listeners stopped accepting only ${Math.round(drainCalled - uninstalled)} ms after (min(drainMs, ${UNINSTALL_ACCEPT_MS}) = 600 ms)`);
});

/**
 * Both processes of one node stopped together by the DaemonSet's foreground deletion (`helm
 * uninstall` mid-roll), each through the real drainAndStop and decision: the old one sees its
 * successor on the agent socket (the successor's status, as main.ts serves it, from its
 * readiness), the successor owns the socket. `oldSees` and `newSees` are what each one's
 * DaemonSet watch and its list at SIGTERM make of the DaemonSet.
 */
async function stopBoth(t: Test, oldSees: 'deleting' | 'present', newSees: 'deleting' | 'unknown', drainMs = 600) {
  const n = await node(t);
  const cfg = stopConfig({ stateDir: n.stateDir, drainMs, binDir: n.binDir, confDir: n.confDir });
  const removed = { old: 0, new: 0 };
  const watch = (state: 'deleting' | 'present' | 'unknown') => ({
    confirm: async () => state,
    snapshot: () => ({ namespace: 'weft-system', name: 'weft-agent', state, ...(state === 'unknown' ? { lastError: 'KUBE_HTTP: list DaemonSet weft-system/weft-agent: HTTP 403' } : {}) }),
    close: async () => undefined,
  });
  const newReadiness: { draining: boolean; stopDecision?: { uninstall: boolean; reason: string } } = { draining: false };
  let newRunning = true;
  const newAgent = stoppingAgent(cfg, {
    readiness: newReadiness,
    redirector: { handOver: () => undefined, remove: async () => void removed.new++ },
    ownDaemonSet: watch(newSees),
  });
  const oldAgent = stoppingAgent(cfg, {
    redirector: { handOver: () => undefined, remove: async () => void removed.old++ },
    ownDaemonSet: watch(oldSees),
    agentSocket: {
      successor: async () =>
        newRunning ? { pid: 2, version: 'new', startedAt: '', draining: newReadiness.draining, ...(newReadiness.draining ? { notReady: 'draining' } : {}), ...(newReadiness.stopDecision ? { stopDecision: newReadiness.stopDecision } : {}) } : undefined,
      close: async () => undefined,
    },
  });
  const started = performance.now();
  // The old process is signalled first: it looks at its successor before that one has decided.
  const oldStopped = drainAndStop(oldAgent, 'SIGTERM');
  await sleep(150);
  const newStopped = drainAndStop(newAgent, 'SIGTERM').then(() => void (newRunning = false));
  await Promise.all([oldStopped, newStopped]);
  return { n, removed, ms: performance.now() - started };
}

t.test('helm uninstall mid-roll, the successor not knowing the DaemonSet is going: the old process takes Weft off', async (t) => {
  const { n, removed } = await stopBoth(t, 'deleting', 'unknown');
  t.same(removed, { old: 1, new: 0 }, 'exactly one process took the table down: the old one, which saw the deletion');
  t.equal(await readFile(n.primary, 'utf8'), PRIMARY, 'weft-cni is out of the chain');
  t.equal(await readFile(join(n.binDir, 'weft-cni'), 'utf8'), UNINSTALLED_STUB, 'the plugin is the stub');
});

t.test('helm uninstall mid-roll, the successor seeing the deletion: it alone takes Weft off', async (t) => {
  const { n, removed } = await stopBoth(t, 'deleting', 'deleting');
  t.same(removed, { old: 0, new: 1 }, 'exactly one process took the table down: the successor');
  t.equal(await readFile(n.primary, 'utf8'), PRIMARY, 'weft-cni is out of the chain');
  t.equal(await readFile(join(n.binDir, 'weft-cni'), 'utf8'), UNINSTALLED_STUB, 'the plugin is the stub');
});

t.test('an upgrade (the DaemonSet stays): the old process leaves the node to its successor at once', async (t) => {
  const n = await node(t);
  const cfg = stopConfig({ stateDir: n.stateDir, drainMs: 5000, binDir: n.binDir, confDir: n.confDir });
  let removed = 0;
  const agent = stoppingAgent(cfg, {
    redirector: { handOver: () => undefined, remove: async () => void removed++ },
    ownDaemonSet: { confirm: async () => 'present', snapshot: () => ({ namespace: 'weft-system', name: 'weft-agent', state: 'present' }), close: async () => undefined },
    agentSocket: { successor: async () => ({ pid: 2, version: 'new', startedAt: '', draining: false }), close: async () => undefined },
  });
  const started = performance.now();
  await drainAndStop(agent, 'SIGTERM');
  t.equal(removed, 0, 'the node stays meshed');
  t.ok(performance.now() - started < 1000, `without waiting for a decision the successor never makes (${Math.round(performance.now() - started)} ms)`);
  t.ok(isChained(await readFile(n.primary, 'utf8')), 'weft-cni stays chained');
});

t.test('a successor that stays undecided: the old process keeps the node meshed after its wait (fail closed)', async (t) => {
  const n = await node(t);
  const cfg = stopConfig({ stateDir: n.stateDir, drainMs: 400, binDir: n.binDir, confDir: n.confDir });
  let removed = 0;
  const agent = stoppingAgent(cfg, {
    redirector: { handOver: () => undefined, remove: async () => void removed++ },
    ownDaemonSet: { confirm: async () => 'deleting', snapshot: () => ({ namespace: 'weft-system', name: 'weft-agent', state: 'deleting' }), close: async () => undefined },
    agentSocket: { successor: async () => ({ pid: 2, version: 'new', startedAt: '', draining: false, notReady: 'no state from the controller yet' }), close: async () => undefined },
  });
  await drainAndStop(agent, 'SIGTERM');
  t.equal(removed, 0, 'the node stays meshed: the successor may still decide');
  t.equal(agent.readiness.stopDecision?.uninstall, false);
  t.match(agent.readiness.stopDecision?.reason, /not decided yet/, `the reason says so: ${agent.readiness.stopDecision?.reason}`);
});
