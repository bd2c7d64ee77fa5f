// Per-node state end to end: two real sync clients with real agent stores, for node-x and node-y,
// against a real agent server (TLS 1.3, HTTP/2, the revisioned store). A policy selecting only a
// pod on node-y never reaches node-x's agent, not even as a message; it does as soon as a pod it
// selects is scheduled onto node-x, in the same message as that pod; and its removal follows the
// pod's. The unaffected agent's revision is brought up by one empty delta after the catch-up time.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource, Workload } from '../../api/agent-sync.ts';
import { startTestServer } from '../../controller/server/test-server.ts';
import { access } from '../policy/test-fixtures.ts';
import { StateStore } from '../state/store.ts';
import { SyncClient } from './client.ts';

const CATCH_UP_MS = 1_500;

function pod(name: string, node: string, app: string): Resource {
  const value: Workload = {
    key: `shop/${name}`,
    uid: `uid-${name}`,
    namespace: 'shop',
    name,
    node,
    ips: [`10.0.0.${name.length}`],
    serviceAccount: 'cart',
    identity: 'spiffe://cluster.local/ns/shop/sa/cart',
    meshed: true,
    labels: { app },
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}

const denyDb: Resource = { kind: 'AccessPolicy', value: access('shop/deny-db', 'DENY', [], { selector: { matchLabels: { app: 'db' }, matchExpressions: [] } }) };

async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

t.test('a policy reaches an agent only while its node runs a pod the policy selects', async (t) => {
  const server = await startTestServer({
    authenticator: { authenticate: (auth) => Promise.resolve({ node: String(auth).replace('Bearer ', ''), username: 'system:serviceaccount:weft-system:weft-agent' }) },
    nodes: ['node-x', 'node-y'],
    server: { catchUpMs: CATCH_UP_MS },
  });
  const dir = await mkdtemp(join(tmpdir(), 'weft-per-node-'));
  await writeFile(join(dir, 'ca.crt'), server.ca);
  const agents = await Promise.all(
    ['node-x', 'node-y'].map(async (node) => {
      await writeFile(join(dir, node), node);
      const store = new StateStore();
      const applied: number[] = [];
      const client = new SyncClient({ url: server.url, node, caFile: join(dir, 'ca.crt'), tokenFile: join(dir, node), agentVersion: 'test', store, onApplied: (r) => applied.push(r), log: () => {} });
      client.start();
      return { store, client, applied };
    }),
  );
  t.teardown(async () => {
    for (const a of agents) a.client.stop();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const [x, y] = agents as [(typeof agents)[0], (typeof agents)[0]];
  const s = server.store;
  s.upsert(pod('db-1', 'node-y', 'db'));
  s.flush();
  await until('both agents synced', () => x.store.revision === s.revision && y.store.revision === s.revision);
  const holds = (a: typeof x): boolean => a.store.accessPolicies().some((p) => p.key === 'shop/deny-db');

  const messagesX = x.applied.length;
  s.upsert(denyDb);
  const created = s.flush();
  await until('node-y holds the policy', () => holds(y) && y.store.revision === created);
  await sleep(300);
  t.notOk(holds(x), 'node-x does not hold it');
  t.equal(x.applied.length, messagesX, 'node-x was sent no message at all');

  s.upsert(pod('db-2', 'node-x', 'db'));
  const scheduled = s.flush();
  await until('node-x at the scheduling revision', () => x.store.revision === scheduled);
  t.ok(holds(x), 'a selected pod scheduled onto node-x brings the policy');
  t.ok(x.store.workload('shop/db-2'), 'in the same message as the pod');
  t.equal(x.applied.length, messagesX + 1, 'one message');

  s.remove({ kind: 'Workload', key: 'shop/db-2' });
  const removed = s.flush();
  await until('node-x at the removal revision', () => x.store.revision === removed);
  t.notOk(holds(x), 'the pod gone, the policy leaves node-x');
  t.ok(holds(y), 'and stays on node-y');

  const messagesBefore = x.applied.length;
  s.upsert({ kind: 'AccessPolicy', value: { ...denyDb.value, generation: 2 } });
  const changed = s.flush();
  await until('node-y has generation 2', () => y.store.accessPolicies()[0]?.generation === 2);
  await sleep(300);
  t.equal(x.applied.length, messagesBefore, 'a new generation for node-y only: nothing for node-x at once');
  t.ok(x.store.revision < changed, 'node-x lags in revision');
  await until('the catch-up', () => x.store.revision === changed, CATCH_UP_MS + 3_000);
  t.equal(x.applied.length, messagesBefore + 1, 'one empty delta brought node-x up to date');
  t.notOk(holds(x), 'with nothing in it');
  t.equal(server.registry.get('node-x')?.lastAckedRevision, changed, 'and the controller knows it');
});
