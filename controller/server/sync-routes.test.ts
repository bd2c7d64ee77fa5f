// Routes reach only agents that said they understand them: an agent from before routing would
// refuse a whole sync message for the unknown Route kind and stop taking updates, and one from
// before GRPCRoute would apply a GRPCRoute to HTTP/1.1 requests as if it were an HTTPRoute. Real server,
// real TLS and HTTP/2, the test agent speaking the protocol line by line.
import t from 'tap';
import type { Resource, SyncMessage } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { createLogger } from '../../api/log.ts';
import { MeshCa } from '../ca/ca.ts';
import { createRoot } from '../ca/root.ts';
import { RevisionedStore } from '../state/store.ts';
import { controllerHostnames, issueServingCert } from '../tls/serving-cert.ts';
import { AgentAuthenticator } from './agent-auth.ts';
import { AgentRegistry } from './agent-registry.ts';
import { createAgentServer } from './agent-server.ts';
import { meshCaSigner } from './signer.ts';
import { TestAgent } from './test-agent.ts';

const TD = 'cluster.local';
const root = await createRoot({ trustDomain: TD });
const serving = await issueServingCert(root.root, { spiffeId: `spiffe://${TD}/ns/weft-system/sa/weft-controller`, hosts: [...controllerHostnames('weft-system'), '127.0.0.1'] });
const store = new RevisionedStore({ config: { trustDomain: TD, mtlsMode: 'PERMISSIVE' }, debounceMs: 2, maxDelayMs: 20 });
const server = createAgentServer({
  host: '127.0.0.1',
  port: 0,
  tls: { cert: serving.certPem, key: serving.keyPem },
  store,
  registry: new AgentRegistry(),
  authenticator: new AgentAuthenticator({ reviewer: { review: async () => ({ authenticated: true, user: { username: 'system:serviceaccount:weft-system:weft-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-1'] } } }) } }),
  pods: { list: () => [] },
  signer: meshCaSigner(new MeshCa(root.root)),
  trustDomain: TD,
  ready: () => true,
  log: createLogger({}, { level: 'error' }),
  helloTimeoutMs: 1_000,
  lingerMs: 100,
});
const { port } = await server.listen();
t.teardown(async () => {
  await server.close(200);
  store.close();
});

const route = (name: string, kind: 'HTTPRoute' | 'GRPCRoute' = 'HTTPRoute'): Resource => ({
  kind: 'Route',
  value: { key: `${kind}/a/${name}`, kind, namespace: 'a', name, generation: 1, created: '2026-01-01T00:00:00Z', parents: [{ service: 'a/web' }], rules: [] } satisfies CompiledRoute,
});
const service: Resource = { kind: 'Service', value: { key: 'a/web', namespace: 'a', name: 'web', clusterIPs: ['10.96.0.1'], ports: [], endpoints: [] } };
store.upsert(service);
store.upsert(route('one'));
store.upsert(route('g-one', 'GRPCRoute'));
store.flush();

const keys = (m: SyncMessage) => (m.type === 'snapshot' ? m.resources : m.upserts).map((r) => `${r.kind}/${r.value.key}`).sort();

const only = (names: string[], http: boolean, grpc: boolean) => names.filter((n) => (n.startsWith('Route/GRPCRoute/') ? grpc : n.startsWith('Route/') ? http : true));

for (const [who, features, http, grpc] of [
  ['an agent that lists routes and grpcroutes', ['routes', 'grpcroutes'], true, true],
  ['an agent from before GRPCRoute', ['routes'], true, false],
  ['an agent from before routing', undefined, false, false],
] as const) {
  t.test(`${who} gets ${http ? (grpc ? 'every Route' : 'HTTPRoutes only') : 'no Route'}`, async (t) => {
    const a = await TestAgent.connect({ url: `https://127.0.0.1:${port}`, ca: root.certificatePem, servername: 'weft-controller', token: 't' });
    t.teardown(() => a.close());
    const s = a.sync({ type: 'hello', node: 'node-1', agentVersion: 'test', ...(features ? { features: [...features] } : {}) });
    const snap = await s.next();
    t.same(keys(snap), only(['Route/GRPCRoute/a/g-one', 'Route/HTTPRoute/a/one', 'Service/a/web'], http, grpc), 'snapshot');
    s.send({ type: 'ack', epoch: snap.epoch, revision: snap.revision });
    store.upsert(route('two'));
    store.upsert(route('g-two', 'GRPCRoute'));
    store.upsert({ ...service, value: { ...service.value, clusterIPs: ['10.96.0.2'] } });
    const delta = await s.next();
    t.same(keys(delta), only(['Route/GRPCRoute/a/g-two', 'Route/HTTPRoute/a/two', 'Service/a/web'], http, grpc), 'delta');
    store.remove({ kind: 'Route', key: 'HTTPRoute/a/two' });
    store.remove({ kind: 'Route', key: 'GRPCRoute/a/g-two' });
    store.upsert({ ...service, value: { ...service.value, clusterIPs: ['10.96.0.1'] } });
    const removal = await s.next();
    const removed = removal.type === 'delta' ? removal.removes.map((r) => `${r.kind}/${r.key}`).sort() : [];
    t.same(removed, only(['Route/GRPCRoute/a/g-two', 'Route/HTTPRoute/a/two'], http, grpc), 'removal');
    s.close();
  });
}
