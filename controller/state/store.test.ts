import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource, Workload } from '../../api/agent-sync.ts';
import { RevisionedStore } from './store.ts';

const CONFIG = { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' } as const;

function workload(name: string, ip = '10.0.0.1', labels: Record<string, string> = {}): Resource {
  const value: Workload = {
    key: `ns/${name}`,
    uid: `uid-${name}`,
    namespace: 'ns',
    name,
    node: 'node-1',
    ips: [ip],
    serviceAccount: 'default',
    identity: 'spiffe://cluster.local/ns/ns/sa/default',
    meshed: true,
    labels,
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}

function store(over: Partial<ConstructorParameters<typeof RevisionedStore>[0]> = {}): RevisionedStore {
  const s = new RevisionedStore({ config: CONFIG, debounceMs: 0, ...over });
  t.teardown(() => s.close());
  return s;
}

t.test('each commit that changes something is one revision', async (t) => {
  const s = store();
  t.equal(s.revision, 0);
  t.match(s.epoch, /^[0-9a-f]{16}$/, 'a random epoch per store');
  t.not(s.epoch, store().epoch, 'two stores, two epochs');
  s.upsert(workload('a'));
  s.upsert(workload('b'));
  t.equal(s.flush(), 1, 'two staged writes commit as one revision');
  s.upsert(workload('a'));
  t.equal(s.flush(), 1, 'writing an equal value is no change');
  s.remove({ kind: 'Workload', key: 'ns/zzz' });
  t.equal(s.flush(), 1, 'removing what is not there is no change');
  s.upsert(workload('a', '10.0.0.2'));
  t.equal(s.flush(), 2);
  s.upsert(workload('c'));
  s.remove({ kind: 'Workload', key: 'ns/c' });
  t.equal(s.flush(), 2, 'added and removed within one burst: nothing happened');
  s.setConfig({ ...CONFIG });
  t.equal(s.flush(), 2, 'the same config is no change');
  s.setConfig({ ...CONFIG, mtlsMode: 'STRICT' });
  t.equal(s.flush(), 3, 'a config change is a revision');
});

t.test('snapshot holds everything, sorted, at the current revision', async (t) => {
  const s = store();
  s.upsert(workload('b'));
  s.upsert(workload('a'));
  s.upsert({ kind: 'Service', value: { key: 'ns/svc', namespace: 'ns', name: 'svc', clusterIPs: ['10.96.0.1'], ports: [], endpoints: [] } });
  s.flush();
  const snap = s.snapshot();
  t.equal(snap.type, 'snapshot');
  t.equal(snap.epoch, s.epoch);
  t.equal(snap.revision, 1);
  t.strictSame(snap.config, CONFIG);
  t.strictSame(snap.resources.map((r) => `${r.kind}/${r.value.key}`), ['Service/ns/svc', 'Workload/ns/a', 'Workload/ns/b']);
  t.equal(s.snapshot(), snap, 'the same message object until the next commit (serialized once for all agents)');
});

t.test('a delta carries the current value of everything touched since its base', async (t) => {
  const s = store();
  s.upsert(workload('a'));
  s.upsert(workload('b'));
  s.flush(); // 1
  s.upsert(workload('a', '10.0.0.9'));
  s.flush(); // 2
  s.remove({ kind: 'Workload', key: 'ns/b' });
  s.upsert(workload('c'));
  s.flush(); // 3
  s.upsert(workload('a', '10.0.0.10'));
  s.flush(); // 4

  const d = s.delta(1);
  t.equal(d?.base, 1);
  t.equal(d?.revision, 4);
  t.strictSame(d?.upserts.map((r) => [r.value.key, (r.value as Workload).ips[0]]), [['ns/a', '10.0.0.10'], ['ns/c', '10.0.0.1']], 'a changed twice appears once, with its latest value');
  t.strictSame(d?.removes, [{ kind: 'Workload', key: 'ns/b' }]);
  t.notOk(d && 'config' in d, 'no config when it did not change');

  const empty = s.delta(4);
  t.strictSame([empty?.upserts, empty?.removes, empty?.base, empty?.revision], [[], [], 4, 4], 'from the current revision: an empty delta');
  t.equal(s.delta(5), null, 'a base from the future is not resumable');
  t.equal(s.delta(1), d, 'deltas for a base are built once per revision');

  s.setConfig({ ...CONFIG, mtlsMode: 'STRICT' });
  s.flush();
  t.strictSame(s.delta(4)?.config, { ...CONFIG, mtlsMode: 'STRICT' }, 'a config change travels in the delta');
});

t.test('the change log is bounded: older bases get a snapshot', async (t) => {
  const s = store({ logRevisions: 3 });
  for (let i = 1; i <= 5; i++) {
    s.upsert(workload(`w${i}`));
    s.flush();
  }
  t.equal(s.revision, 5);
  t.equal(s.floor, 2, 'three revisions kept: 3, 4, 5, so deltas can start at 2');
  t.equal(s.delta(1), null);
  t.strictSame(s.delta(2)?.upserts.map((r) => r.value.key), ['ns/w3', 'ns/w4', 'ns/w5']);

  t.equal(s.resumeFrom(s.epoch, 1).type, 'snapshot', 'outside the log: snapshot');
  const resumed = s.resumeFrom(s.epoch, 3);
  t.equal(resumed.type, 'delta', 'inside the log: delta');
  t.equal(resumed.type === 'delta' && resumed.base, 3);
  t.equal(s.resumeFrom('another-epoch', 4).type, 'snapshot', 'another epoch: snapshot');
  t.equal(s.resumeFrom(undefined, undefined).type, 'snapshot', 'a new agent: snapshot');
});

t.test('the change log is also bounded by the number of refs it holds', async (t) => {
  const s = store({ logRevisions: 100, logRefs: 10 });
  for (let burst = 0; burst < 3; burst++) {
    for (let i = 0; i < 6; i++) s.upsert(workload(`b${burst}-${i}`));
    s.flush();
  }
  t.equal(s.floor, 2, 'after 18 refs in 3 revisions only the last (6 refs) fits in 10');
  t.ok(s.delta(2), 'the newest revision stays resumable');
  const huge = store({ logRefs: 2 });
  for (let i = 0; i < 5; i++) huge.upsert(workload(`h${i}`));
  huge.flush();
  t.equal(huge.delta(0)?.upserts.length, 5, 'a single revision larger than the bound is still kept');
});

t.test('a burst of writes is debounced into one revision', async (t) => {
  const s = store({ debounceMs: 20, maxDelayMs: 1000 });
  const commits: number[] = [];
  s.subscribe((rev) => commits.push(rev));
  for (let i = 0; i < 500; i++) s.upsert(workload(`p${i}`, `10.1.${i >> 8}.${i & 255}`));
  t.equal(s.revision, 0, 'nothing committed while the burst lasts');
  await sleep(60);
  t.strictSame(commits, [1], 'one revision, one notification');
  t.equal(s.size, 500);
});

t.test('a steady stream of writes still commits within maxDelay', async (t) => {
  const s = store({ debounceMs: 20, maxDelayMs: 50 });
  const started = performance.now();
  let firstCommitAt = 0;
  s.subscribe(() => (firstCommitAt ||= performance.now()));
  // A write every 5 ms would postpone a pure debounce forever.
  for (let i = 0; i < 40; i++) {
    s.upsert(workload(`s${i}`));
    await sleep(5);
  }
  await sleep(30);
  t.ok(firstCommitAt > 0, 'committed during the stream');
  t.ok(firstCommitAt - started < 120, `first commit after ${Math.round(firstCommitAt - started)} ms, bounded by maxDelay`);
  t.ok(s.revision >= 2, `the stream was committed in ${s.revision} revisions, not 40`);
  t.ok(s.revision < 20);
});

t.test('close drops staged writes and stops notifying', async (t) => {
  const s = new RevisionedStore({ config: CONFIG, debounceMs: 5 });
  let notified = 0;
  s.subscribe(() => notified++);
  s.upsert(workload('a'));
  s.close();
  await sleep(20);
  t.equal(s.revision, 0);
  t.equal(notified, 0);
});

t.test('resume by content: only what differs from what the agent says it holds, on its node', async (t) => {
  const { access } = await import('../../agent/policy/test-fixtures.ts');
  const { StateStore } = await import('../../agent/state/store.ts');
  const onNode = (name: string, node: string, app: string): Resource => {
    const r = workload(name, '10.0.0.9', { app });
    return { kind: 'Workload', value: { ...(r.value as Workload), node } };
  };
  const forDb: Resource = { kind: 'AccessPolicy', value: access('ns/for-db', 'DENY', [], { selector: { matchLabels: { app: 'db' }, matchExpressions: [] } }) };
  const before = store();
  for (let i = 0; i < 50; i++) before.upsert(onNode(`w${i}`, i % 2 === 0 ? 'node-1' : 'node-2', i === 1 ? 'db' : 'web'));
  before.upsert(forDb);
  before.flush();
  t.same(
    before.snapshotFor('node-1').resources.filter((r) => r.kind === 'AccessPolicy'),
    [],
    'the policy is for node-2 only',
  );
  // An agent of node-2 that held the old controller's view.
  const agent = new StateStore();
  t.ok(agent.apply(before.snapshotFor('node-2')).ok);
  const hello = { epoch: before.epoch, revision: before.revision, digests: agent.digests() ?? {} };

  const same = store();
  for (const r of [...before.snapshot().resources].reverse()) same.upsert(r);
  same.flush();
  const nothing = same.resumeFor('node-2', hello, true);
  t.same([nothing.upserts, nothing.removes, nothing.resume?.replace], [[], [], {}], 'the same content, another epoch: nothing to send');
  t.same(same.resumeFor('node-1', hello, true).resume?.replace.AccessPolicy?.ids.length, 1, "node-1's view lacks node-2's policy: its bucket is replaced");

  const moved = store();
  for (const r of before.snapshot().resources) moved.upsert(r);
  moved.upsert(onNode('w1', 'node-1', 'db')); // the only db pod moves: node-2 no longer needs the policy
  moved.flush();
  const m = moved.resumeFor('node-2', hello, true);
  const { bucketOf } = await import('../../api/agent-sync-digest.ts');
  const mates = Array.from({ length: 50 }, (_, i) => `ns/w${i}`).filter((k) => bucketOf(k, 64) === bucketOf('ns/w1', 64));
  t.same(
    m.upserts.map((r) => r.value.key).sort(),
    mates.sort(),
    `the moved workload and its bucket-mates sent: ${mates.length} of 50`,
  );
  t.same(Object.keys(m.resume?.replace ?? {}).sort(), ['AccessPolicy', 'Workload'], 'the policy bucket is replaced with nothing');
  t.ok(agent.apply(m).ok, 'the agent takes it');
  t.same(agent.accessPolicies(), [], 'and no longer holds the policy');
  t.equal(agent.epoch, moved.epoch, 'and is at the new epoch');
  t.same(
    [...agent.workloads()].sort((a, b) => (a.key < b.key ? -1 : 1)),
    moved.snapshotFor('node-2').resources.filter((r) => r.kind === 'Workload').map((r) => r.value).sort((a, b) => (a.key < b.key ? -1 : 1)),
    'its workloads are the new view',
  );
  t.notOk(agent.apply(m).ok, 'a resume applies only to the state it was computed for');
});
