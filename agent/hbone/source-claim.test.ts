// Baggage spoofing: a peer with a valid workload certificate names, in its CONNECT's `baggage`, a
// pod that does not run on its node (or does not carry its identity), to borrow that pod's address
// for ipBlocks rules. Over real TLS with real certificates: the server's verifier sees the peer's
// SPIFFE ID and address as the tunnel server proves them, and the agent's real StateStore.

import { once } from 'node:events';
import net from 'node:net';
import t from 'tap';
import type { Workload } from '../../api/agent-sync.ts';
import { registry } from '../metrics.ts';
import { StateStore } from '../state/store.ts';
import { HbonePool } from './pool.ts';
import { HboneServer } from './server.ts';
import { parseSourceClaim, SourceClaimVerifier, type ClaimVerdict } from './source-claim.ts';
import { createTestMesh } from './test-fixtures.ts';

const LOOPBACK = '127.0.0.1';
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';
const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);

function pod(name: string, node: string, hostIP: string, ip: string, identity = CLIENT): Workload {
  const sa = identity.split('/').pop() ?? '';
  return { key: `shop/${name}`, uid: name, namespace: 'shop', name, node, ips: [ip], serviceAccount: sa, identity, meshed: true, labels: {}, namedPorts: {}, hostIPs: [hostIP] };
}

// The peer connects from 127.0.0.1: that is node-a's address.
const store = new StateStore();
store.apply({
  type: 'snapshot',
  epoch: 'e1',
  revision: 1,
  config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' },
  resources: [
    pod('frontend-a', 'node-a', LOOPBACK, '10.1.0.5'),
    pod('frontend-b', 'node-b', '10.200.0.12', '10.2.0.5'), // same identity, another node
    pod('admin-a', 'node-a', LOOPBACK, '10.1.0.9', 'spiffe://cluster.local/ns/shop/sa/admin'), // same node, another identity
    { ...pod('pending-a', 'node-a', LOOPBACK, ''), ips: [] },
  ].map((value) => ({ kind: 'Workload' as const, value })),
});

const verdicts: ClaimVerdict[] = [];
const verifier = new SourceClaimVerifier(store);
const server = new HboneServer({
  certificateFor: () => serverCert,
  // The inbound proxy's use of the verifier, reduced to its verdict: refuse nothing, record it.
  handler: async (request) => {
    verdicts.push(verifier.verify(request.headers.baggage, { identity: request.peerIdentity, address: request.peerAddress }));
    return { action: 'deny', status: 403, reason: 'test' };
  },
});
const listener = net.createServer((socket) => server.handleConnection(socket, { ip: LOOPBACK, port: 15008 }));
listener.listen(0, LOOPBACK);
await once(listener, 'listening');
const pool = new HbonePool({ secureContextFor: () => clientCert.secureContext, hbonePort: (listener.address() as net.AddressInfo).port });
t.teardown(async () => {
  await pool.close({ graceMs: 0 });
  await server.close({ graceMs: 0 });
  listener.close();
});

async function verdictFor(baggage: string | undefined): Promise<ClaimVerdict> {
  const before = verdicts.length;
  const headers = baggage === undefined ? {} : { baggage };
  await pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: 8080 }, headers }).catch(() => undefined);
  const verdict = verdicts[before];
  if (!verdict) throw new Error('the handler saw no stream');
  return verdict;
}

async function ignoredCount(reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('weft_hbone_source_claims_ignored_total')?.get();
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

t.test('a pod on the peer\'s node with the certificate\'s identity is accepted', async (t) => {
  const v = await verdictFor('k8s.namespace.name=shop,k8s.pod.name=frontend-a,service.name=frontend');
  t.equal(v.result, 'accepted');
  t.equal(v.result === 'accepted' ? v.source.ips[0] : '', '10.1.0.5', 'its address is the source address');
});

t.test('a pod with the same identity on another node is ignored: its address is not borrowed', async (t) => {
  const before = await ignoredCount('NODE_MISMATCH');
  const v = await verdictFor('k8s.namespace.name=shop,k8s.pod.name=frontend-b');
  t.same(v, { result: 'ignored', reason: 'NODE_MISMATCH', claim: { namespace: 'shop', pod: 'frontend-b' } });
  t.equal(await ignoredCount('NODE_MISMATCH'), before + 1, 'counted in weft_hbone_source_claims_ignored_total');
});

t.test('a pod on the peer\'s node with another identity is ignored', async (t) => {
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=admin-a'), { result: 'ignored', reason: 'IDENTITY_MISMATCH' });
});

t.test('unknown pods, pods without an address, ambiguous and malformed baggage are ignored', async (t) => {
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=nobody'), { result: 'ignored', reason: 'UNKNOWN_POD' });
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=pending-a'), { result: 'ignored', reason: 'NO_ADDRESS' });
  // Naming the pod twice must not let a second value win over the first.
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=frontend-a,k8s.pod.name=frontend-b'), { result: 'ignored', reason: 'MALFORMED' });
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=%zz'), { result: 'ignored', reason: 'MALFORMED' });
  t.match(await verdictFor('k8s.namespace.name=shop,k8s.pod.name=../frontend-a'), { result: 'ignored', reason: 'MALFORMED' });
  t.match(await verdictFor(`k8s.namespace.name=shop,k8s.pod.name=frontend-a,${'x=y,'.repeat(3000)}`), { result: 'ignored', reason: 'MALFORMED' });
  t.same(await verdictFor(undefined), { result: 'none' });
  t.same(await verdictFor('service.name=frontend'), { result: 'none' }, 'baggage that names no pod is no claim');
});

t.test('a peer whose address is no node\'s is never attributed a pod', async (t) => {
  const elsewhere = new SourceClaimVerifier(store);
  t.match(elsewhere.verify('k8s.namespace.name=shop,k8s.pod.name=frontend-a', { identity: CLIENT, address: { ip: '192.0.2.1', port: 1 } }), { result: 'ignored', reason: 'NODE_UNKNOWN' });
  t.equal(elsewhere.verify('k8s.namespace.name=shop,k8s.pod.name=frontend-b', { identity: CLIENT, address: { ip: '::ffff:10.200.0.12', port: 1 } }).result, 'accepted', 'IPv4-mapped peer addresses match');
});

t.test('parseSourceClaim: W3C baggage with properties, spaces and percent-encoding', async (t) => {
  t.same(parseSourceClaim(' k8s.pod.name = web-1 ;p=1 , k8s.namespace.name=a%2Db'), { namespace: 'a-b', pod: 'web-1' });
  t.same(parseSourceClaim(['k8s.pod.name=web-1', 'k8s.namespace.name=shop']), { namespace: 'shop', pod: 'web-1' }, 'repeated header fields combine');
  t.equal(parseSourceClaim('k8s.pod.name=web-1'), 'MALFORMED', 'a pod without a namespace');
  t.equal(parseSourceClaim('garbage'), 'MALFORMED');
});
