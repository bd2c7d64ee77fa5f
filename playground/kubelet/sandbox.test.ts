// Pod sandboxes with the real ptp + host-local chain: made once and remembered on disk (a new
// kubelet process does not run ADD again), torn down with the stored result, cleaned up after a
// failed or interrupted ADD.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseNetworkConfig } from './cni-config.ts';
import { CniPluginError } from './cni-chain.ts';
import { silentLogger } from '../../api/log.ts';
import { createNetns, netnsExists } from './netns.ts';
import { PodStateStore } from './pod-state-store.ts';
import { ensureSandbox, sandboxId, teardownSandbox, type SandboxDeps, type SandboxSpec } from './sandbox.ts';
import { installRecorder, netFixture, ptpPlugins, readRecord, writeConflist, type NetFixture } from './test-support.ts';

function deps(f: NetFixture, store = new PodStateStore(join(f.dir, 'node'))): SandboxDeps {
  return { store, cniConfDir: f.confDir, chain: f.chain, nodeIP: '10.250.0.11', log: silentLogger };
}

function spec(f: NetFixture, hostNetwork = false): SandboxSpec {
  return { uid: `0000${f.suffix}-aaaa-bbbb-cccc-dddddddddddd`, namespace: 'default', name: 'web', netns: f.podNs, hostNetwork };
}

async function recordingNetwork(f: NetFixture, subnet = f.subnet): Promise<string> {
  await installRecorder(f);
  const recordTo = join(f.dir, 'calls.jsonl');
  await writeConflist(f, ptpPlugins(f, subnet, [{ type: 'recorder', recordTo }]));
  return recordTo;
}

t.test('the sandbox is made once: a new kubelet process finds it instead of running ADD again', async (t) => {
  const f = await netFixture(t);
  const calls = await recordingNetwork(f);
  const s = spec(f);

  const first = await ensureSandbox(s, deps(f));
  t.equal(first.podIPs.length, 1, 'the pod has an IP');
  t.equal(first.netnsPath, `/run/netns/${f.podNs}`);
  const net = await new PodStateStore(join(f.dir, 'node')).readNetwork(s.uid);
  t.equal(net?.attachment.containerId, sandboxId(s.uid), 'CNI_CONTAINERID is the sandbox ID derived from the UID');
  t.ok(net?.result, 'the final result is stored');

  // A fresh store over the same directory: what a restarted kubelet sees.
  const again = await ensureSandbox(s, deps(f, new PodStateStore(join(f.dir, 'node'))));
  t.same(again.podIPs, first.podIPs, 'same IP');
  t.same(
    (await readRecord(calls)).map((c) => c.env.CNI_COMMAND),
    ['ADD'],
    'ADD ran once',
  );
  t.equal(sandboxId(s.uid), sandboxId(s.uid), 'the sandbox ID is stable');
  t.not(sandboxId(s.uid), sandboxId('another-uid'));
});

t.test('teardown runs DEL with the stored result and removes the namespace; again is a no-op', async (t) => {
  const f = await netFixture(t);
  const calls = await recordingNetwork(f);
  const s = spec(f);
  const d = deps(f);
  await ensureSandbox(s, d);
  const stored = (await d.store.readNetwork(s.uid))?.result;

  await teardownSandbox(s.uid, d);
  const del = (await readRecord(calls)).find((c) => c.env.CNI_COMMAND === 'DEL');
  t.same(del?.conf.prevResult, stored, 'DEL got the result of the ADD');
  t.notOk(netnsExists(f.podNs), 'the namespace is gone');
  t.equal(await d.store.readNetwork(s.uid), undefined, 'the network record is gone');
  t.ok(await d.store.readPod(s.uid), 'the pod record stays until the pod is forgotten');

  await teardownSandbox(s.uid, d);
  t.equal((await readRecord(calls)).filter((c) => c.env.CNI_COMMAND === 'DEL').length, 1, 'nothing left to DEL');
});

t.test('a failed ADD is undone with DEL, leaves no namespace, and the next attempt can succeed', async (t) => {
  const f = await netFixture(t);
  const calls = await recordingNetwork(f, '10.251.0.0/31');
  const s = spec(f);
  const d = deps(f);

  const err = await ensureSandbox(s, d).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CniPluginError, 'the plugin error surfaces');
  t.equal((err as CniPluginError).cniCode, 999);
  t.notOk(netnsExists(f.podNs), 'no namespace is left behind');
  t.equal(await d.store.readNetwork(s.uid), undefined, 'no half-made network is recorded');
  t.same(
    (await readRecord(calls)).map((c) => [c.env.CNI_COMMAND, 'prevResult' in c.conf]),
    [['DEL', false]],
    'DEL followed the failed ADD, without a prevResult',
  );

  await recordingNetwork(f);
  const ok = await ensureSandbox(s, d);
  t.equal(ok.podIPs.length, 1, 'retry with a working network succeeds');
});

t.test('an ADD interrupted by a kubelet crash is undone before the network is set up again', async (t) => {
  const f = await netFixture(t);
  const calls = await recordingNetwork(f);
  const s = spec(f);
  const d = deps(f);
  // What a kubelet killed during ADD leaves: the records, the namespace, no result.
  await d.store.writePod({ uid: s.uid, namespace: s.namespace, name: s.name, netns: s.netns, sandboxId: sandboxId(s.uid), createdAt: new Date().toISOString() });
  // The configuration in force when ADD began records to its own file.
  const oldCalls = join(f.dir, 'old-calls.jsonl');
  const config = parseNetworkConfig(
    JSON.stringify({ cniVersion: '1.0.0', name: 'wkt', plugins: ptpPlugins(f, f.subnet, [{ type: 'recorder', recordTo: oldCalls }]) }),
    'x.conflist',
  );
  await d.store.writeNetwork(s.uid, {
    config,
    attachment: { containerId: sandboxId(s.uid), netnsPath: `/run/netns/${s.netns}`, ifName: 'eth0', args: [] },
  });
  await createNetns(s.netns);

  const sb = await ensureSandbox(s, d);
  t.equal(sb.podIPs.length, 1);
  t.same(
    (await readRecord(oldCalls)).map((c) => [c.env.CNI_COMMAND, 'prevResult' in c.conf]),
    [['DEL', false]],
    'DEL ran first, with the configuration of the interrupted ADD and no result',
  );
  t.same(
    (await readRecord(calls)).map((c) => c.env.CNI_COMMAND),
    ['ADD'],
    'then ADD, with the current configuration',
  );
  t.ok((await d.store.readNetwork(s.uid))?.result, 'the new result is stored');
});

t.test('a hostNetwork pod shares the node network: no namespace, no CNI', async (t) => {
  const f = await netFixture(t);
  const calls = await recordingNetwork(f);
  const d = deps(f);
  const s = { ...spec(f, true), netns: `wkt-unused-${f.suffix}` };
  const sb = await ensureSandbox(s, d);
  t.same(sb, { netnsPath: null, podIPs: ['10.250.0.11'] });
  t.notOk(existsSync(`/run/netns/${s.netns}`));
  t.same(await readRecord(calls), []);
  await teardownSandbox(s.uid, d);
  t.same(await readRecord(calls), [], 'nothing to tear down either');
});
