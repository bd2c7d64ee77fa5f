// The agent API end to end over real TLS 1.3 and HTTP/2: a test agent speaks the sync protocol
// line by line against the real server, store, registry and mesh CA. Token reviews are answered
// from a table here (the real TokenReview against a real API server is proven in
// controller/controller.playground.test.ts); everything after authentication is the real path.
import t from 'tap';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { webcrypto, X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import type { Resource, SignResponse, SyncMessage, Workload } from '../../api/agent-sync.ts';
import { MeshCa } from '../ca/ca.ts';
import { ECDSA_P256, createRoot } from '../ca/root.ts';
import { x509 } from '../../api/x509.ts';
import { createLogger } from '../../api/log.ts';
import { createControllerMetrics } from '../metrics.ts';
import { RevisionedStore } from '../state/store.ts';
import { controllerHostnames, issueServingCert } from '../tls/serving-cert.ts';
import { AgentAuthenticator } from './agent-auth.ts';
import type { TokenReviewResult } from './agent-auth.ts';
import { AgentRegistry } from './agent-registry.ts';
import { createAgentServer } from './agent-server.ts';
import type { AgentServer } from './agent-server.ts';
import { meshCaSigner } from './signer.ts';
import { TestAgent } from './test-agent.ts';

const TD = 'cluster.local';
const CONFIG = { trustDomain: TD, mtlsMode: 'PERMISSIVE' } as const;
const log = createLogger({}, { level: process.env.WEFT_TEST_LOG === '1' ? 'debug' : 'error' });

const agentUser = (node?: string): TokenReviewResult => ({
  authenticated: true,
  user: { username: 'system:serviceaccount:weft-system:weft-agent', ...(node ? { extra: { 'authentication.kubernetes.io/node-name': [node] } } : {}) },
});
const TOKENS: Record<string, TokenReviewResult> = {
  'node-1-token': agentUser('node-1'),
  'node-2-token': agentUser('node-2'),
  'unbound-token': agentUser(),
  'other-sa-token': { authenticated: true, user: { username: 'system:serviceaccount:default:default', extra: { 'authentication.kubernetes.io/node-name': ['node-1'] } } },
  'expired-token': { authenticated: false, error: 'token has expired' },
};
let reviews = 0;

function workload(name: string, node = 'node-1', ip = '10.0.0.1'): Resource {
  const value: Workload = {
    key: `shop/${name}`,
    uid: `uid-${name}`,
    namespace: 'shop',
    name,
    node,
    ips: [ip],
    serviceAccount: 'cart',
    identity: `spiffe://${TD}/ns/shop/sa/cart`,
    meshed: true,
    labels: { app: name },
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}

const pods: V1Pod[] = [
  { metadata: { namespace: 'shop', name: 'cart-1' }, spec: { nodeName: 'node-1', serviceAccountName: 'cart', containers: [] }, status: { phase: 'Running' } },
  { metadata: { namespace: 'shop', name: 'orders-1' }, spec: { nodeName: 'node-2', serviceAccountName: 'orders', containers: [] }, status: { phase: 'Running' } },
  { metadata: { namespace: 'shop', name: 'batch-1' }, spec: { nodeName: 'node-1', serviceAccountName: 'batch', containers: [] }, status: { phase: 'Succeeded' } },
];

const root = await createRoot({ trustDomain: TD });
const serving = await issueServingCert(root.root, { spiffeId: `spiffe://${TD}/ns/weft-system/sa/weft-controller`, hosts: [...controllerHostnames('weft-system'), '127.0.0.1'] });
const store = new RevisionedStore({ config: CONFIG, debounceMs: 2, maxDelayMs: 20 });
const registry = new AgentRegistry();
const metrics = createControllerMetrics({ connectedAgents: () => registry.connectedCount(), storeRevision: () => store.revision });
const authenticator = new AgentAuthenticator({
  reviewer: {
    review: async (token) => {
      reviews++;
      const r = TOKENS[token];
      if (!r) return { authenticated: false, error: 'invalid bearer token' };
      return r;
    },
  },
});
let ready = true;
const server: AgentServer = createAgentServer({
  host: '127.0.0.1',
  port: 0,
  tls: { cert: serving.certPem, key: serving.keyPem },
  store,
  registry,
  authenticator,
  pods: { list: (ns) => pods.filter((p) => !ns || p.metadata?.namespace === ns) },
  signer: meshCaSigner(new MeshCa(root.root)),
  trustDomain: TD,
  ready: () => ready,
  metrics,
  log,
  heartbeatIntervalMs: 200,
  heartbeatTimeoutMs: 300,
  helloTimeoutMs: 1_000,
  lingerMs: 300,
  idleConnectionMs: 1_500,
});
const { port } = await server.listen();
const url = `https://127.0.0.1:${port}`;
t.teardown(async () => {
  await server.close(500);
  store.close();
});

store.upsert(workload('cart-1'));
store.upsert(workload('orders-1', 'node-2', '10.0.1.1'));
store.flush();

async function agent(token?: string, at = url): Promise<TestAgent> {
  const a = await TestAgent.connect({ url: at, ca: root.certificatePem, servername: 'weft-controller', ...(token ? { token } : {}) });
  t.teardown(() => a.close());
  return a;
}

const hello = (node: string, epoch?: string, revision?: number) => ({ type: 'hello' as const, node, agentVersion: 'test', ...(epoch !== undefined ? { epoch, revision } : {}) });

async function commit(fn: () => void): Promise<number> {
  const next = new Promise<number>((resolve) => {
    const off = store.subscribe((rev) => {
      off();
      resolve(rev);
    });
  });
  fn();
  return next;
}

t.test('TLS 1.3, ALPN h2, and a serving certificate from the mesh root', async (t) => {
  const sock = tlsConnect({ host: '127.0.0.1', port, ca: root.certificatePem, servername: 'weft-controller.weft-system.svc', ALPNProtocols: ['h2'] });
  await once(sock, 'secureConnect');
  t.equal(sock.getProtocol(), 'TLSv1.3');
  t.equal(sock.alpnProtocol, 'h2');
  t.ok(sock.authorized, 'the chain verifies against the mesh root, for the Service DNS name');
  const peer = new X509Certificate(sock.getPeerX509Certificate()?.raw ?? Buffer.alloc(0));
  t.match(peer.subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/weft-system\/sa\/weft-controller/);
  sock.destroy();

  const old = tlsConnect({ host: '127.0.0.1', port, ca: root.certificatePem, servername: 'weft-controller', maxVersion: 'TLSv1.2', ALPNProtocols: ['h2'] });
  const [err] = (await once(old, 'error')) as [Error];
  t.match(err.message, /protocol version|alert/i, 'TLS 1.2 is refused');
});

t.test('requests are authenticated before anything else', async (t) => {
  const anon = await agent();
  const noToken = anon.sync(hello('node-1'));
  t.equal(await noToken.status, 401);
  t.match(await noToken.body(), { error: { code: 'UNAUTHENTICATED', message: /authorization: Bearer/ } });

  const expired = (await agent('expired-token')).sync(hello('node-1'));
  t.equal(await expired.status, 401);
  t.match(await expired.body(), { error: { code: 'UNAUTHENTICATED', message: /expired/ } });

  const otherSa = (await agent('other-sa-token')).sync(hello('node-1'));
  t.equal(await otherSa.status, 403, 'another service account, even bound to a node');
  t.match(await otherSa.body(), { error: { code: 'FORBIDDEN', message: /weft-system:weft-agent/ } });

  const unbound = (await agent('unbound-token')).sync(hello('node-1'));
  t.equal(await unbound.status, 403, 'an agent token not bound to a node');
  t.match(await unbound.body(), { error: { code: 'FORBIDDEN', message: /not bound to a node/ } });

  const a = await agent('node-1-token');
  const liar = a.sync(hello('node-2'));
  t.equal(await liar.status, 403, 'a hello naming another node than the token');
  t.match(await liar.body(), { error: { code: 'NODE_MISMATCH', message: /node-2.*node-1/ } });

  const notHello = a.sync({ type: 'ack', epoch: store.epoch, revision: 1 });
  t.equal(await notHello.status, 400);
  t.match(await notHello.body(), { error: { code: 'BAD_REQUEST', message: /first message must be a hello/ } });

  const garbage = a.sync('{"type":"hello"');
  t.equal(await garbage.status, 400);
  t.match(await garbage.body(), { error: { code: 'BAD_REQUEST', message: /not JSON/ } });

  const silent = a.sync(null);
  t.equal(await silent.status, 400, 'no hello within the timeout');
  t.match(await silent.body(), { error: { code: 'BAD_REQUEST', message: /no hello within/ } });

  t.match(await a.request('GET', '/weft.v1/sync'), { status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED' } } });
  t.match(await a.request('POST', '/nope'), { status: 404, body: { error: { code: 'NOT_FOUND' } } });
});

t.test('token reviews are cached by token hash', async (t) => {
  const before = reviews;
  const a = await agent('node-2-token');
  for (let i = 0; i < 5; i++) {
    const s = a.sync(hello('node-2'));
    t.equal(await s.status, 200);
    s.close();
  }
  t.equal(reviews - before, 1, 'five streams, one TokenReview');
});

t.test('snapshot on connect, delta per change, ACKs recorded', async (t) => {
  const a = await agent('node-1-token');
  const s = a.sync(hello('node-1'));
  t.equal(await s.status, 200);
  t.equal((await s.response)['content-type'], 'application/x-ndjson');
  const snap = await s.next();
  t.equal(snap.type, 'snapshot');
  t.equal(snap.epoch, store.epoch);
  t.equal(snap.revision, store.revision);
  t.strictSame(snap.type === 'snapshot' && snap.config, CONFIG);
  t.strictSame(snap.type === 'snapshot' && snap.resources.map((r) => r.value.key).sort(), ['shop/cart-1', 'shop/orders-1']);
  s.send({ type: 'ack', epoch: snap.epoch, revision: snap.revision });

  const rev = await commit(() => store.upsert(workload('cart-2')));
  const delta = await s.next();
  t.equal(delta.type, 'delta');
  t.equal(delta.revision, rev);
  t.equal(delta.type === 'delta' && delta.base, snap.revision, 'based on what this agent was sent');
  t.strictSame(delta.type === 'delta' && delta.upserts.map((r) => r.value.key), ['shop/cart-2']);
  s.send({ type: 'ack', epoch: delta.epoch, revision: delta.revision });
  await sleep(50);
  const st = registry.get('node-1');
  t.equal(st?.lastAckedRevision, rev, 'the registry has the last ACKed revision');
  t.equal(st?.lastSentRevision, rev);
  t.ok(st?.connectedSince, 'and when the agent connected');
  t.equal(st?.agentVersion, 'test');

  const text = await metrics.registry.metrics();
  t.match(text, /weft_controller_sync_pushes_total\{type="snapshot"\} \d+/);
  t.match(text, /weft_controller_sync_replies_total\{result="ack"\} \d+/);
  t.match(text, /weft_controller_agents_connected [1-9]/);
  s.close();
});

t.test('a reconnecting agent resumes with a delta; another epoch gets a snapshot', async (t) => {
  const a = await agent('node-1-token');
  const first = a.sync(hello('node-1'));
  const snap = await first.next();
  first.send({ type: 'ack', epoch: snap.epoch, revision: snap.revision });
  first.close();
  await first.closed;

  // Changes while the agent is away.
  const rev = await commit(() => {
    store.upsert(workload('away-1'));
    store.remove({ kind: 'Workload', key: 'shop/cart-2' });
  });

  const resumed = a.sync(hello('node-1', snap.epoch, snap.revision));
  const d = await resumed.next();
  t.equal(d.type, 'delta', 'inside the change log: only the delta');
  if (d.type === 'delta') {
    t.equal(d.base, snap.revision);
    t.equal(d.revision, rev);
    t.strictSame(d.upserts.map((r) => r.value.key), ['shop/away-1']);
    t.strictSame(d.removes, [{ kind: 'Workload', key: 'shop/cart-2' }]);
  }
  resumed.close();

  const current = a.sync(hello('node-1', store.epoch, store.revision));
  const empty = await current.next();
  t.match(empty, { type: 'delta', base: store.revision, revision: store.revision, upserts: [], removes: [] }, 'already current: an empty delta says so');
  current.close();

  const stale = a.sync(hello('node-1', 'an-old-epoch', rev));
  const full = await stale.next();
  t.equal(full.type, 'snapshot', 'another epoch: a snapshot');
  t.equal(full.epoch, store.epoch);
  stale.close();

  const ahead = a.sync(hello('node-1', store.epoch, store.revision + 100));
  t.equal((await ahead.next()).type, 'snapshot', 'a revision from the future: a snapshot');
  ahead.close();
});

t.test('a NACK is recorded and what follows is based on the last ACKed revision', async (t) => {
  const a = await agent('node-1-token');
  const s = a.sync(hello('node-1'));
  const snap = await s.next();
  s.send({ type: 'ack', epoch: snap.epoch, revision: snap.revision });

  const bad = await commit(() => store.upsert(workload('bad-1')));
  const refused = await s.next();
  t.equal(refused.revision, bad);
  s.send({ type: 'nack', epoch: refused.epoch, revision: refused.revision, reason: 'Workload shop/bad-1: unsupported' });
  await sleep(50);
  t.match(registry.get('node-1')?.lastNack, { revision: bad, reason: 'Workload shop/bad-1: unsupported' });
  t.equal(registry.get('node-1')?.lastAckedRevision, snap.revision, 'the last good revision stays what the agent acknowledged');
  t.strictSame(await s.drain(100), [], 'nothing is resent while the state has not moved');

  const next = await commit(() => store.upsert(workload('good-1')));
  const d = await s.next();
  t.equal(d.type === 'delta' && d.base, snap.revision, 'the next delta starts from the last ACKed revision');
  t.equal(d.revision, next);
  t.strictSame(d.type === 'delta' && d.upserts.map((r) => r.value.key), ['shop/bad-1', 'shop/good-1'], 'and so carries the refused change again with the new one');
  t.match(await metrics.registry.metrics(), /weft_controller_sync_replies_total\{result="nack"\} [1-9]/);
  s.close();
});

t.test('an agent that reads slowly gets fewer, larger deltas instead of a queue', async (t) => {
  const s = (await agent('node-1-token')).sync(hello('node-1'));
  await s.next();
  s.stream.pause(); // stops reading: HTTP/2 flow control soon stops the controller's writes
  const commits = 150;
  const padding = 'x'.repeat(4096);
  for (let i = 0; i < commits; i++) {
    await commit(() => {
      const w = workload(`slow-${i}`);
      (w.value as Workload).labels.padding = padding;
      store.upsert(w);
    });
  }
  const last = store.revision;
  s.stream.resume();
  const got: SyncMessage[] = [];
  while (got.at(-1)?.revision !== last) got.push(await s.next());
  const keys = new Set(got.flatMap((m) => (m.type === 'delta' ? m.upserts.map((r) => r.value.key) : [])));
  t.ok(got.length < commits / 2, `${commits} commits reached the agent as ${got.length} messages`);
  t.equal(keys.size, commits, 'and together they carry every change');
  t.ok(got.every((m, i) => i === 0 || (m.type === 'delta' && m.base === got[i - 1]?.revision)), 'each delta builds on the previous message');
  s.close();
  for (let i = 0; i < commits; i++) store.remove({ kind: 'Workload', key: `shop/slow-${i}` });
  store.flush();
});

t.test("a malformed line ends only that stream, with a reason; another agent's stream goes on", async (t) => {
  const one = (await agent('node-1-token')).sync(hello('node-1'));
  const two = (await agent('node-2-token')).sync(hello('node-2'));
  await one.next();
  await two.next();

  one.send('{"type":"ack","epoch":');
  const trailers = await one.trailers;
  t.equal(trailers['weft-error-code'], 'PROTOCOL_ERROR');
  t.match(trailers['weft-error-message'], /malformed message: message is not JSON/);
  await one.closed;

  const rev = await commit(() => store.upsert(workload('after-1')));
  const d: SyncMessage = await two.next();
  t.equal(d.revision, rev, 'the other agent still gets its deltas');
  two.send({ type: 'ack', epoch: d.epoch, revision: d.revision });
  await sleep(50);
  t.equal(registry.get('node-2')?.lastAckedRevision, rev);
  t.equal(registry.get('node-2')?.streams, 1);

  const liar = (await agent('node-2-token')).sync(hello('node-2'));
  const snap = await liar.next();
  liar.send({ type: 'ack', epoch: snap.epoch, revision: snap.revision + 5 });
  t.match(await liar.trailers, { 'weft-error-code': 'PROTOCOL_ERROR', 'weft-error-message': /never sent/ }, 'an ACK for an unsent revision ends the stream');
  const twice = (await agent('node-2-token')).sync(hello('node-2'));
  await twice.next();
  twice.send(hello('node-2'));
  t.match(await twice.trailers, { 'weft-error-code': 'PROTOCOL_ERROR', 'weft-error-message': /first message/ });
  two.close();
});

t.test('a client that never ends its side is reset after the linger', async (t) => {
  const s = (await agent('node-1-token')).sync(hello('node-2'), { halfOpen: true });
  t.equal(await s.status, 403);
  const started = Date.now();
  await s.closed;
  t.ok(Date.now() - started >= 200, `closed ${Date.now() - started} ms after the answer (linger 300 ms)`);
  t.equal(s.stream.rstCode, 0, 'with NO_ERROR: the answer was complete');
});

t.test('a connection that opens no stream is closed after a while', async (t) => {
  const a = await agent('node-1-token');
  const started = Date.now();
  await once(a.session, 'close');
  t.ok(Date.now() - started >= 1_400, `closed after ${Date.now() - started} ms idle (limit 1500 ms)`);
});

t.test('a connection that stops answering pings is dropped', async (t) => {
  // A TCP relay the test can freeze: the agent's packets stop, but no FIN or RST arrives, as
  // when a node loses power or the network partitions.
  let frozen = false;
  const sockets: Socket[] = [];
  const relay = createTcpServer((client) => {
    const upstream = tcpConnect(port, '127.0.0.1');
    sockets.push(client, upstream);
    client.on('data', (b) => !frozen && upstream.write(b));
    upstream.on('data', (b) => !frozen && client.write(b));
    client.on('error', () => {});
    upstream.on('error', () => {});
    upstream.on('close', () => client.destroy());
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  t.teardown(() => {
    sockets.forEach((s) => s.destroy());
    relay.close();
  });
  const relayPort = (relay.address() as { port: number }).port;

  const s = (await agent('node-2-token', `https://127.0.0.1:${relayPort}`)).sync(hello('node-2'));
  await s.next();
  await sleep(500);
  t.equal(registry.get('node-2')?.streams, 1, 'a live connection survives several ping rounds');
  frozen = true;
  const started = Date.now();
  while (registry.get('node-2')?.streams !== 0 && Date.now() - started < 3_000) await sleep(50);
  t.equal(registry.get('node-2')?.streams, 0, `dropped after ${Date.now() - started} ms without pong (interval 200 ms, timeout 300 ms)`);
  t.ok(registry.get('node-2')?.disconnectedAt);
});

async function csrFor(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_P256, name: 'CN=ignored' });
  return csr.toString('pem');
}

t.test('sign: only for service accounts with a pod on the agent node', async (t) => {
  const a = await agent('node-1-token');
  const ok = await a.sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csrFor() });
  t.equal(ok.status, 200);
  const res = ok.body as SignResponse;
  const leaf = new X509Certificate(res.certChainPem);
  t.match(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/cart');
  t.ok(leaf.verify(new X509Certificate(res.trustBundlePem).publicKey), 'signed by the mesh root in the trust bundle');
  t.equal(new Date(res.notAfter).getTime(), new Date(leaf.validTo).getTime());

  const elsewhere = await a.sign({ namespace: 'shop', serviceAccount: 'orders', csrPem: await csrFor() });
  t.equal(elsewhere.status, 403, 'orders runs on node-2 only');
  t.match(elsewhere.body, { error: { code: 'NOT_AUTHORIZED_FOR_IDENTITY', message: /shop\/orders.*node node-1/ } });
  const finished = await a.sign({ namespace: 'shop', serviceAccount: 'batch', csrPem: await csrFor() });
  t.equal(finished.status, 403, 'a finished pod grants nothing');

  const node2 = await agent('node-2-token');
  t.equal((await node2.sign({ namespace: 'shop', serviceAccount: 'orders', csrPem: await csrFor() })).status, 200, 'node-2 may have orders');

  t.match(await a.sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: 'not a csr' }), { status: 400, body: { error: { code: 'CSR_INVALID' } } });
  t.match(await a.sign('{"namespace":"shop"}'), { status: 400, body: { error: { code: 'BAD_REQUEST', message: /csrPem/ } } });
  t.match(await a.sign('x'.repeat(70 * 1024)), { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
  t.match(await (await agent('unbound-token')).sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csrFor() }), { status: 403, body: { error: { code: 'FORBIDDEN' } } });
  t.match(await (await agent()).sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csrFor() }), { status: 401 });

  const text = await metrics.registry.metrics();
  t.match(text, /weft_controller_sign_requests_total\{result="signed"\} 2/);
  t.match(text, /weft_controller_sign_requests_total\{result="NOT_AUTHORIZED_FOR_IDENTITY"\} 2/);
});

t.test('not ready: 503 until the caches have synced', async (t) => {
  ready = false;
  t.teardown(() => void (ready = true));
  const a = await agent('node-1-token');
  const s = a.sync(hello('node-1'));
  t.equal(await s.status, 503);
  t.match(await s.body(), { error: { code: 'NOT_READY' } });
  t.match(await a.sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csrFor() }), { status: 503 });
});

t.test('shutdown ends every stream with SHUTTING_DOWN', async (t) => {
  const s = (await agent('node-1-token')).sync(hello('node-1'));
  await s.next();
  const closing = server.close(2_000);
  t.match(await s.trailers, { 'weft-error-code': 'SHUTTING_DOWN' });
  await closing;
  t.equal(server.syncStreams(), 0);
});
