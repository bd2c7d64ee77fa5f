// Per-node views of the store: a policy reaches the nodes that run a meshed workload it selects,
// enters a node's view in the same revision as the pod that makes the node need it, and leaves it
// with the last such pod. Workloads and services reach every node.
import t from 'tap';
import type { Resource, SyncMessage, Workload } from '../../api/agent-sync.ts';
import { access, meshTls } from '../../agent/policy/test-fixtures.ts';
import { RevisionedStore } from './store.ts';

const CONFIG = { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' } as const;

function pod(name: string, node: string, labels: Record<string, string> = {}, o: { namespace?: string; meshed?: boolean } = {}): Resource {
  const namespace = o.namespace ?? 'shop';
  const value: Workload = {
    key: `${namespace}/${name}`,
    uid: `uid-${name}`,
    namespace,
    name,
    node,
    ips: [],
    serviceAccount: 'default',
    identity: `spiffe://cluster.local/ns/${namespace}/sa/default`,
    meshed: o.meshed ?? true,
    labels,
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}

const denyDb = (generation = 1): Resource => ({
  kind: 'AccessPolicy',
  value: { ...access('shop/deny-db', 'DENY', [], { selector: { matchLabels: { app: 'db' }, matchExpressions: [] } }), generation },
});

function store(over: Partial<ConstructorParameters<typeof RevisionedStore>[0]> = {}): RevisionedStore {
  const s = new RevisionedStore({ config: CONFIG, debounceMs: 0, ...over });
  t.teardown(() => s.close());
  return s;
}

const keys = (m: SyncMessage): string[] => (m.type === 'snapshot' ? m.resources : m.upserts).map((r) => `${r.kind}/${r.value.key}`).sort();
const policyKeys = (m: SyncMessage): string[] => keys(m).filter((k) => k.includes('Policy/'));
const removed = (m: SyncMessage): string[] => (m.type === 'delta' ? m.removes.map((r) => `${r.kind}/${r.key}`).sort() : []);

t.test('a policy reaches only the nodes where it selects a meshed pod', async (t) => {
  const s = store();
  s.upsert(pod('db', 'node-y', { app: 'db' }));
  s.upsert(pod('web', 'node-x', { app: 'web' }));
  s.upsert(denyDb());
  s.flush();
  t.same(policyKeys(s.snapshotFor('node-y')), ['AccessPolicy/shop/deny-db'], 'node-y runs the db pod: it gets the policy');
  t.same(policyKeys(s.snapshotFor('node-x')), [], 'node-x does not');
  t.same(keys(s.snapshotFor('node-x')), ['Workload/shop/db', 'Workload/shop/web'], 'but every node gets every workload');
  t.same(policyKeys(s.snapshot()), ['AccessPolicy/shop/deny-db'], 'the whole store still holds it');
});

t.test('scheduling a selected pod onto a node brings the policy in the same delta; its removal takes it away', async (t) => {
  const s = store();
  s.upsert(pod('db-1', 'node-y', { app: 'db' }));
  s.upsert(pod('web', 'node-x', { app: 'web' }));
  const base = s.flush();
  s.upsert(denyDb());
  const created = s.flush();
  const forX = s.deltaFor('node-x', base);
  t.ok(forX, 'a delta for node-x');
  t.same([forX?.upserts.length, forX?.removes.length], [0, 0], 'the policy for node-y is nothing for node-x');
  t.same(keys(s.deltaFor('node-y', base) as SyncMessage), ['AccessPolicy/shop/deny-db'], 'node-y gets it');

  s.upsert(pod('db-2', 'node-x', { app: 'db' }));
  const scheduled = s.flush();
  t.same(keys(s.deltaFor('node-x', created) as SyncMessage), ['AccessPolicy/shop/deny-db', 'Workload/shop/db-2'], 'the pod and the policy it needs arrive together');
  t.same(keys(s.deltaFor('node-y', created) as SyncMessage), ['Workload/shop/db-2'], 'node-y already has the policy: only the workload');
  t.same(keys(s.deltaFor('node-x', base) as SyncMessage), ['AccessPolicy/shop/deny-db', 'Workload/shop/db-2'], 'also from an older base');

  s.upsert(pod('db-2', 'node-x', { app: 'web' }));
  const relabelled = s.flush();
  const gone = s.deltaFor('node-x', scheduled) as SyncMessage;
  t.same(removed(gone), ['AccessPolicy/shop/deny-db'], 'relabelled out of the selector: the removal reaches node-x');
  t.same(keys(gone), ['Workload/shop/db-2']);
  t.same(removed(s.deltaFor('node-y', scheduled) as SyncMessage), [], 'node-y keeps it');
  t.same(removed(s.deltaFor('node-x', created) as SyncMessage), [], 'from before the pod came, node-x never had it: nothing to remove');
  t.same(policyKeys(s.deltaFor('node-x', created) as SyncMessage), [], 'nor to add');

  s.upsert(pod('db-3', 'node-x', { app: 'db' }));
  s.flush();
  s.remove({ kind: 'Workload', key: 'shop/db-3' });
  const deleted = s.flush();
  t.same(removed(s.deltaFor('node-x', relabelled) as SyncMessage).filter((k) => k.includes('Policy')), [], 'in and out between two pushes: nothing about the policy');
  t.same(policyKeys(s.snapshotFor('node-x')), [], 'and not in a snapshot');
  t.equal(s.revision, deleted);
});

t.test('a change or deletion of a policy reaches only the nodes that hold it', async (t) => {
  const s = store();
  s.upsert(pod('db', 'node-y', { app: 'db' }));
  s.upsert(pod('web', 'node-x', { app: 'web' }));
  s.upsert(denyDb(1));
  const base = s.flush();
  s.upsert(denyDb(2));
  s.flush();
  t.same(policyKeys(s.deltaFor('node-y', base) as SyncMessage), ['AccessPolicy/shop/deny-db'], 'the new generation reaches node-y');
  const forX = s.deltaFor('node-x', base) as SyncMessage & { type: 'delta' };
  t.same([forX.upserts.length, forX.removes.length], [0, 0], 'and nothing reaches node-x');
  t.equal(s.deltaFor('node-x', base), s.deltaFor('node-z', base), 'nodes with the same view share one message');
  s.remove({ kind: 'AccessPolicy', key: 'shop/deny-db' });
  const after = s.revision;
  s.flush();
  t.same(removed(s.deltaFor('node-y', after) as SyncMessage), ['AccessPolicy/shop/deny-db'], 'the deletion reaches node-y');
  t.same(removed(s.deltaFor('node-x', after) as SyncMessage), [], 'node-x is not told to remove what it never had');
});

t.test('namespace-wide and mesh-wide policies: every node with a selected meshed pod, and no other', async (t) => {
  const s = store({ installNamespace: 'weft-system' });
  s.upsert(pod('a', 'node-1'));
  s.upsert(pod('b', 'node-2', {}, { namespace: 'data' }));
  s.upsert(pod('c', 'node-3', {}, { meshed: false }));
  s.upsert({ kind: 'AccessPolicy', value: access('shop/all', 'ALLOW', []) });
  s.upsert({ kind: 'MeshTLSPolicy', value: meshTls('weft-system/strict', 'STRICT', { scope: 'mesh' }) });
  s.flush();
  t.same(policyKeys(s.snapshotFor('node-1')), ['AccessPolicy/shop/all', 'MeshTLSPolicy/weft-system/strict']);
  t.same(policyKeys(s.snapshotFor('node-2')), ['MeshTLSPolicy/weft-system/strict'], 'another namespace: only the mesh-wide one');
  t.same(policyKeys(s.snapshotFor('node-3')), [], 'a node with no meshed pod needs no policy');
  const base = s.revision;
  s.upsert(pod('c', 'node-3', {}, { meshed: true }));
  s.flush();
  t.same(policyKeys(s.deltaFor('node-3', base) as SyncMessage), ['AccessPolicy/shop/all', 'MeshTLSPolicy/weft-system/strict'], 'the pod opting in brings both');
});

t.test('node sets are kept as far back as the change log: a base past the floor gets a snapshot', async (t) => {
  const s = store({ logRevisions: 3 });
  s.upsert(pod('db', 'node-y', { app: 'db' }));
  s.upsert(denyDb(1));
  const first = s.flush();
  for (let g = 2; g < 8; g++) {
    s.upsert(denyDb(g));
    s.flush();
  }
  t.equal(s.deltaFor('node-y', first), null, 'out of the log: null, the session sends a snapshot');
  const recent = s.revision - 2;
  t.ok(s.deltaFor('node-y', recent), 'inside the log: a delta');
});

t.test('a node snapshot encodes as one JSON line equal to the message', async (t) => {
  const s = store();
  for (let i = 0; i < 50; i++) s.upsert(pod(`p${i}`, `node-${i % 5}`, { app: i % 2 ? 'db' : 'web' }));
  s.upsert(denyDb());
  s.flush();
  for (const node of ['node-0', 'node-1', 'node-9']) {
    const msg = s.snapshotFor(node);
    const line = Buffer.concat(s.encode(msg)).toString();
    t.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line');
    const parsed = JSON.parse(line) as SyncMessage;
    t.same(parsed, JSON.parse(JSON.stringify(msg)), `${node}: the line says what the message says`);
  }
  const empty = store();
  empty.upsert(denyDb());
  empty.flush();
  t.same(JSON.parse(Buffer.concat(empty.encode(empty.snapshotFor('node-0'))).toString()), JSON.parse(JSON.stringify(empty.snapshotFor('node-0'))), 'also with no workloads at all');
});
