// Compressed sync messages (the `gzip` feature, api/agent-sync.ts GzipLine), against a real agent
// server (TLS 1.3, HTTP/2, the revisioned store): an agent that lists the feature gets its
// snapshot compressed, and the same content as an agent without it, which gets it plain; small
// messages stay plain for everyone; a real sync client with a real agent store applies a
// compressed snapshot; and a compressed line that is not what it claims is refused, not applied.
import t from 'tap';
import { gzipSync } from 'node:zlib';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseSyncMessage, ProtocolError, type AgentMessage, type Resource, type Workload } from '../../api/agent-sync.ts';
import { startTestServer } from '../../controller/server/test-server.ts';
import { GZIP_MIN_BYTES } from '../../controller/state/store.ts';
import { access } from '../policy/test-fixtures.ts';
import { StateStore } from '../state/store.ts';
import { SyncClient } from './client.ts';

function pod(i: number, node: string): Resource {
  const value: Workload = {
    key: `shop/p-${i}`,
    uid: `uid-${i}`,
    namespace: 'shop',
    name: `p-${i}`,
    node,
    ips: [`10.1.${i >> 8}.${i & 255}`],
    serviceAccount: 'cart',
    identity: 'spiffe://cluster.local/ns/shop/sa/cart',
    meshed: true,
    labels: { app: `a${i % 10}` },
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}

const policy = (round: number): Resource => ({
  kind: 'AccessPolicy',
  value: { ...access('shop/allow-a2', 'ALLOW', [], { selector: { matchLabels: { app: 'a2' }, matchExpressions: [] } }), generation: round },
});

const hello = (node: string, features: string[]): AgentMessage => ({ type: 'hello', node, agentVersion: 'test', features });

async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

t.test('snapshots go compressed to agents that take it, plain to the others', async (t) => {
  const server = await startTestServer({
    authenticator: { authenticate: (auth) => Promise.resolve({ node: String(auth).replace('Bearer ', ''), username: 'system:serviceaccount:weft-system:weft-agent' }) },
    nodes: ['node-x', 'node-y'],
  });
  t.teardown(() => server.close());
  const s = server.store;
  for (let i = 0; i < 500; i++) s.upsert(pod(i, i % 2 === 0 ? 'node-x' : 'node-y'));
  s.upsert(policy(1));
  s.flush();

  const zipped = (await server.agent('node-x')).sync(hello('node-x', ['routes', 'digests', 'gzip']));
  const plain = (await server.agent('node-x')).sync(hello('node-x', ['routes', 'digests']));
  const [z, p] = [await zipped.nextLine(), await plain.nextLine()];
  t.ok(z?.startsWith('{"type":"gzip","parts":['), 'with the feature: compressed');
  t.ok(p?.startsWith('{"type":"snapshot"'), 'without it: a plain snapshot');
  const [zm, pm] = [parseSyncMessage(z as string), parseSyncMessage(p as string)];
  t.equal(zm.type, 'snapshot');
  t.same(zm, pm, 'the same message either way');
  t.ok(pm.type === 'snapshot' && pm.resources.some((r) => r.kind === 'AccessPolicy'), "the node's own policy is in it (compressed per node, not shared)");
  t.ok((p as string).length > GZIP_MIN_BYTES, `the snapshot is large (${(p as string).length} bytes)`);
  t.ok((z as string).length * 3 < (p as string).length, `and compressed at least 3× smaller (${(z as string).length} bytes)`);
  const otherNode = (await server.agent('node-y')).sync(hello('node-y', ['routes', 'digests', 'gzip']));
  const y = parseSyncMessage((await otherNode.nextLine()) as string);
  t.ok(y.type === 'snapshot' && !y.resources.some((r) => r.kind === 'AccessPolicy'), 'another node, with the same shared part, gets its own policies (none)');

  // An ACK for the snapshot, then a small change: plain for both.
  for (const [stream, m] of [[zipped, zm], [plain, pm]] as const) stream.send({ type: 'ack', epoch: m.epoch, revision: m.revision });
  s.upsert(policy(2));
  s.flush();
  const [zd, pd] = [await zipped.nextLine(), await plain.nextLine()];
  t.ok(zd?.startsWith('{"type":"delta"'), 'a small delta stays plain even where compression is taken');
  t.equal(zd, pd, 'byte for byte what the other agent gets');
});

t.test('a sync client applies a compressed snapshot', async (t) => {
  const server = await startTestServer({
    authenticator: { authenticate: (auth) => Promise.resolve({ node: String(auth).replace('Bearer ', ''), username: 'system:serviceaccount:weft-system:weft-agent' }) },
    nodes: ['node-x'],
  });
  const dir = await mkdtemp(join(tmpdir(), 'weft-gzip-'));
  await writeFile(join(dir, 'ca.crt'), server.ca);
  await writeFile(join(dir, 'node-x'), 'node-x');
  const s = server.store;
  for (let i = 0; i < 500; i++) s.upsert(pod(i, 'node-x'));
  s.upsert(policy(1));
  s.flush();
  const store = new StateStore();
  const lines: number[] = [];
  const client = new SyncClient({ url: server.url, node: 'node-x', caFile: join(dir, 'ca.crt'), tokenFile: join(dir, 'node-x'), agentVersion: 'test', store, onMessage: (_m, bytes) => lines.push(bytes), log: () => {} });
  client.start();
  t.teardown(async () => {
    client.stop();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  await until('the agent synced', () => store.revision === s.revision);
  t.equal(store.workloads().filter((w) => w.key.startsWith('shop/p-')).length, 500, 'every workload');
  t.ok(store.accessPolicies().some((p) => p.key === 'shop/allow-a2'), 'and the policy');
  t.ok((lines[0] ?? Infinity) < GZIP_MIN_BYTES, `in one line of ${lines[0]} bytes`);
  await until('acknowledged', () => server.registry.get('node-x')?.lastAckedRevision === s.revision);
  t.equal(server.registry.get('node-x')?.lastNack, undefined, 'nothing refused');
});

t.test('a compressed line that is not what it claims is refused', async (t) => {
  const b64 = (s: string | Buffer): string => gzipSync(s).toString('base64');
  const inner = JSON.stringify({ type: 'snapshot', epoch: 'e', revision: 1, config: { trustDomain: 'td', mtlsMode: 'STRICT' }, resources: [] });
  const line = (parts: unknown): string => JSON.stringify({ type: 'gzip', parts });
  t.equal(parseSyncMessage(line([b64(inner)])).type, 'snapshot', 'a good one parses');
  t.equal(parseSyncMessage(line([b64(inner.slice(0, 20)), b64(inner.slice(20))])).type, 'snapshot', 'members concatenate');
  t.throws(() => parseSyncMessage(line([])), ProtocolError, 'no parts');
  t.throws(() => parseSyncMessage(line(['bm90IGd6aXA='])), ProtocolError, 'not gzip');
  t.throws(() => parseSyncMessage(line([b64(inner).slice(0, 40)])), ProtocolError, 'truncated');
  t.throws(() => parseSyncMessage(line([b64('{"type":"snapshot"')])), ProtocolError, 'not JSON inside');
  t.throws(() => parseSyncMessage(line([b64(line([b64(inner)]))])), ProtocolError, 'compressed twice');
  t.throws(() => parseSyncMessage(line([b64(JSON.stringify({ type: 'snapshot', epoch: 'e', revision: 1, config: {}, resources: [] }))])), ProtocolError, 'the message inside is checked');
});
