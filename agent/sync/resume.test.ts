// Resume by content across controller processes, end to end: the real sync client and agent store
// against real agent servers (TLS 1.3, HTTP/2, the revisioned store), each server a controller
// process of its own with its own epoch, as after a restart or a leader change. The agent keeps
// its store and meets the next server: with the same state it is sent nothing but an empty
// resume; with one change, only the bucket that holds it; with state that diverged every way,
// whatever makes it equal to the new controller's view. An agent without the feature still
// gets a snapshot.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource, Service, SyncMessage, Workload } from '../../api/agent-sync.ts';
import { bucketOf, bucketsFor, canonicalJson } from '../../api/agent-sync-digest.ts';
import { startTestServer, type TestServer } from '../../controller/server/test-server.ts';
import { access } from '../policy/test-fixtures.ts';
import { StateStore } from '../state/store.ts';
import { SyncClient, type SyncTarget } from './client.ts';

const NODE = 'node-x';
const PODS = 300;

function pod(i: number, o: { node?: string; app?: string; ip?: string } = {}): Resource {
  const name = `p-${i}`;
  const value: Workload = {
    key: `shop/${name}`,
    uid: `uid-${name}`,
    namespace: 'shop',
    name,
    node: o.node ?? (i % 3 === 0 ? NODE : 'node-y'),
    ips: [o.ip ?? `10.1.${i >> 8}.${i & 255}`],
    serviceAccount: 'cart',
    identity: 'spiffe://cluster.local/ns/shop/sa/cart',
    meshed: true,
    labels: { app: o.app ?? (i % 2 === 0 ? 'db' : 'web') },
    namedPorts: { http: 8080 },
  };
  return { kind: 'Workload', value };
}

function svc(name: string, port = 80): Resource {
  const value: Service = { key: `shop/${name}`, namespace: 'shop', name, clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port, protocol: 'TCP', appProtocol: 'http' }], endpoints: [] };
  return { kind: 'Service', value };
}

const denyDb = (gen = 1): Resource => ({ kind: 'AccessPolicy', value: { ...access('shop/deny-db', 'DENY', [], { selector: { matchLabels: { app: 'db' }, matchExpressions: [] } }), generation: gen } });
const allowWeb: Resource = { kind: 'AccessPolicy', value: access('shop/allow-web', 'ALLOW', [], { selector: { matchLabels: { app: 'web' }, matchExpressions: [] } }) };
const onlyElsewhere: Resource = { kind: 'AccessPolicy', value: access('shop/elsewhere', 'DENY', [], { selector: { matchLabels: { app: 'nowhere' }, matchExpressions: [] } }) };

/** The state every server starts from: the same content, built in a different order each time. */
function base(reverse: boolean): Resource[] {
  const rs: Resource[] = [...Array.from({ length: PODS }, (_, i) => pod(i)), svc('cart'), svc('db'), denyDb(), onlyElsewhere];
  return reverse ? rs.reverse() : rs;
}

async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** What the agent holds, comparable with what a controller's view of the node is. */
function held(s: StateStore): string[] {
  const all: Resource[] = [
    ...s.workloads().map((value) => ({ kind: 'Workload' as const, value })),
    ...s.services().map((value) => ({ kind: 'Service' as const, value })),
    ...s.accessPolicies().map((value) => ({ kind: 'AccessPolicy' as const, value })),
    ...s.mtlsPolicies().map((value) => ({ kind: 'MeshTLSPolicy' as const, value })),
    ...s.routes().map((value) => ({ kind: 'Route' as const, value })),
  ];
  return all.map((r) => canonicalJson(r)).sort();
}

function view(server: TestServer): string[] {
  return server.store
    .snapshotFor(NODE)
    .resources.map((r) => canonicalJson(r))
    .sort();
}

t.test('an agent resumes by content on a controller of another epoch', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-resume-'));
  const servers: TestServer[] = [];
  const clients: SyncClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.stop();
    for (const s of servers) await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(join(dir, 'token'), NODE);

  /** A controller process of its own: a new epoch, the same content unless `change` alters it. */
  const controller = async (change: (rs: Resource[]) => Resource[] = (rs) => rs): Promise<TestServer> => {
    const server = await startTestServer({
      authenticator: { authenticate: (auth) => Promise.resolve({ node: String(auth).replace('Bearer ', ''), username: 'system:serviceaccount:weft-system:weft-agent' }) },
      nodes: [NODE],
    });
    servers.push(server);
    for (const r of change(base(servers.length % 2 === 0))) server.store.upsert(r);
    server.store.flush();
    return server;
  };

  /** Connects `store` to `server` and returns the messages it receives, as they come. */
  const connect = async (server: TestServer, store: SyncTarget): Promise<{ messages: SyncMessage[]; bytes: number[] }> => {
    const ca = join(dir, `ca-${servers.indexOf(server)}`);
    await writeFile(ca, server.ca);
    for (const c of clients) c.stop();
    const got = { messages: [] as SyncMessage[], bytes: [] as number[] };
    const client = new SyncClient({
      url: server.url,
      node: NODE,
      caFile: ca,
      tokenFile: join(dir, 'token'),
      agentVersion: 'test',
      store,
      onMessage: (m, b) => {
        got.messages.push(m);
        got.bytes.push(b);
      },
      log: () => {},
    });
    clients.push(client);
    client.start();
    await until('the agent synced', () => store.epoch === server.store.epoch && store.revision === server.store.revision);
    return got;
  };

  const agent = new StateStore();
  const first = await controller();
  const initial = await connect(first, agent);
  t.equal(initial.messages[0]?.type, 'snapshot', 'a new agent starts from a snapshot');
  t.same(held(agent), view(first), 'and holds the node view');
  t.ok(agent.accessPolicies().some((p) => p.key === 'shop/deny-db'), 'with the policy for its node');
  t.notOk(agent.accessPolicies().some((p) => p.key === 'shop/elsewhere'), 'and not the one for elsewhere');

  await t.test('the same state: no snapshot, nothing but the new epoch', async (t) => {
    const server = await controller();
    t.not(server.store.epoch, first.store.epoch, 'a controller of another epoch');
    const got = await connect(server, agent);
    await sleep(200);
    t.equal(got.messages.length, 1, 'one message');
    const m = got.messages[0] as SyncMessage;
    t.equal(m.type, 'delta', 'not a snapshot');
    t.ok(m.type === 'delta' && m.resume, 'a resume');
    t.same(m.type === 'delta' && [m.upserts.length, m.removes.length, Object.keys(m.resume?.replace ?? {})], [0, 0, []], 'that carries no resource');
    t.ok((got.bytes[0] ?? Infinity) < 400, `in ${got.bytes[0]} bytes (the snapshot was ${initial.bytes[0]})`);
    t.same(held(agent), view(server), 'the agent holds the view');
    await until('the ACK', () => server.registry.get(NODE)?.lastAckedRevision === server.store.revision);
    t.pass('and the new controller has its ACK');
  });

  await t.test('one change: only the bucket that holds it', async (t) => {
    const changed = pod(7, { ip: '10.9.9.9' });
    const server = await controller((rs) => rs.map((r) => (r.kind === 'Workload' && r.value.key === 'shop/p-7' ? changed : r)));
    const got = await connect(server, agent);
    await sleep(200);
    t.equal(got.messages.length, 1, 'one message');
    const m = got.messages[0] as SyncMessage;
    t.ok(m.type === 'delta' && m.resume, 'a resume, not a snapshot');
    if (m.type !== 'delta') return;
    const buckets = bucketsFor(PODS);
    const bucket = bucketOf('shop/p-7', buckets);
    const mates = Array.from({ length: PODS }, (_, i) => `shop/p-${i}`).filter((k) => bucketOf(k, buckets) === bucket);
    t.same(m.resume?.replace, { Workload: { buckets, ids: [bucket] } }, 'one Workload bucket replaced');
    t.same(m.upserts.map((r) => r.value.key).sort(), mates.sort(), `its ${mates.length} workload(s) sent, of ${PODS}`);
    t.same(
      m.upserts.find((r) => r.value.key === 'shop/p-7'),
      changed,
      'the changed one as it is now',
    );
    t.equal(agent.workload('shop/p-7')?.ips[0], '10.9.9.9', 'applied');
    t.same(held(agent), view(server), 'the agent holds the view');

    // The stream goes on as usual from there.
    server.store.upsert(svc('extra'));
    const rev = server.store.flush();
    await until('the next delta', () => agent.revision === rev);
    const next = got.messages.at(-1) as SyncMessage;
    t.ok(next.type === 'delta' && !next.resume && next.upserts.length === 1, 'the next change is an ordinary delta');
  });

  await t.test('state that diverged every way converges', async (t) => {
    const server = await controller((rs) => [
      ...rs.filter((r) => !(r.kind === 'Workload' && ['shop/p-3', 'shop/p-10'].includes(r.value.key)) && !(r.kind === 'AccessPolicy' && r.value.key === 'shop/deny-db') && !(r.kind === 'Service' && r.value.key === 'shop/db')),
      pod(1000),
      pod(1001, { node: NODE, app: 'web' }),
      pod(11, { app: 'other' }),
      svc('cart', 8080),
      allowWeb,
    ]);
    // And what the agent alone got wrong: values and a resource no controller sent.
    const own = agent.apply({ type: 'delta', epoch: agent.epoch ?? '', revision: agent.revision, base: agent.revision, upserts: [pod(20, { app: 'rogue' }), svc('ghost')], removes: [{ kind: 'Workload', key: 'shop/p-21' }] });
    t.ok(own.ok, 'the agent diverged on its own too');
    const got = await connect(server, agent);
    const m = got.messages[0] as SyncMessage;
    t.ok(m.type === 'delta' && m.resume, 'a resume, not a snapshot');
    t.same(held(agent), view(server), 'the agent holds exactly the new view');
    t.notOk(agent.workload('shop/p-3'), 'a workload gone while the agent was away is gone');
    t.equal(agent.workload('shop/p-20')?.labels.app, 'db', 'a value only the agent had is corrected');
    t.ok(agent.workload('shop/p-21'), 'one it lost is back');
    t.notOk(agent.services().some((s) => s.key === 'shop/ghost'), 'one only it had is gone');
    t.notOk(agent.services().some((s) => s.key === 'shop/db'), 'so is a service');
    t.notOk(agent.accessPolicies().some((p) => p.key === 'shop/deny-db'), 'and a policy');
    t.ok(agent.accessPolicies().some((p) => p.key === 'shop/allow-web'), 'a new policy for its node is there');
    t.equal(agent.services().find((s) => s.key === 'shop/cart')?.ports[0]?.port, 8080, 'a changed service is current');
    t.ok(m.type === 'delta' && m.upserts.length < 30, `in ${m.type === 'delta' ? m.upserts.length : '?'} resources, of ${view(server).length}`);
  });

  await t.test('an agent without the feature is sent a snapshot', async (t) => {
    const server = await controller();
    // The agent's own store behind a target that cannot say what it holds, as before the feature.
    const old: SyncTarget = {
      get epoch() {
        return agent.epoch;
      },
      get revision() {
        return agent.revision;
      },
      apply: (msg) => agent.apply(msg),
    };
    const got = await connect(server, old);
    t.equal(got.messages[0]?.type, 'snapshot', 'a snapshot');
    t.same(held(agent), view(server), 'the agent holds the view');
  });
});
