// Replication of the node's state and certificates to data-plane workers, without threads: what a
// worker's replica receives must leave it equal to the main thread's store, whenever it joined.
import t from 'tap';
import type { SyncMessage, Workload } from '../api/agent-sync.ts';
import { createTestMesh } from './hbone/test-fixtures.ts';
import { CertificateReplica, ReplicatedStore, applyReplication, issuedOf, type Replication } from './replica.ts';
import { StateStore } from './state/store.ts';

const workload = (name: string, ip: string): Workload => ({
  key: `shop/${name}`, uid: `u-${name}`, namespace: 'shop', name, node: 'n1', ips: [ip],
  serviceAccount: name, identity: `spiffe://cluster.local/ns/shop/sa/${name}`, meshed: true, labels: {}, namedPorts: {},
});
const config = { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' as const };
const snapshot: SyncMessage = { type: 'snapshot', epoch: 'e1', revision: 1, config, resources: [{ kind: 'Workload', value: workload('a', '10.0.0.1') }] };

t.test('a replica that joins late gets the state as it is, then every change, in order', async (t) => {
  const main = new ReplicatedStore();
  const early: Replication[] = [];
  main.replicate((r) => early.push(r));
  main.apply(snapshot);
  main.setLocalIPs('u-b', ['10.0.0.2']);
  main.apply({ type: 'delta', epoch: 'e1', revision: 2, base: 1, config: { ...config, mtlsMode: 'STRICT' }, upserts: [{ kind: 'Workload', value: workload('b', '10.0.0.2') }], removes: [] });

  const late: Replication[] = [];
  main.replicate((r) => late.push(r));
  main.apply({ type: 'delta', epoch: 'e1', revision: 3, base: 2, upserts: [], removes: [{ kind: 'Workload', key: 'shop/a' }] });
  main.clearLocalIPs(['10.0.0.2']);

  for (const [name, stream] of [['early', early], ['late', late]] as const) {
    const replica = new StateStore();
    for (const r of stream) t.equal(applyReplication(r, replica, new CertificateReplica()), undefined, `${name}: ${r.type} applies`);
    t.same({ epoch: replica.epoch, revision: replica.revision, config: replica.config, workloads: replica.workloads() }, { epoch: main.epoch, revision: main.revision, config: main.config, workloads: main.workloads() }, `${name}: equal to the main store`);
    t.equal(replica.workloadByIP('10.0.0.2')?.key, 'shop/b', `${name}: the pod's address from the controller`);
  }
  t.equal(late[0]?.type, 'state', 'the late replica starts from a snapshot');
  t.equal(late.filter((r) => r.type === 'local-ips').length, 1, 'and the local addresses the CNI reported');
});

t.test('a delta on another base is refused by the replica, which then needs a snapshot', async (t) => {
  const replica = new StateStore();
  applyReplication({ type: 'state', msg: snapshot }, replica, new CertificateReplica());
  const failed = applyReplication({ type: 'state', msg: { type: 'delta', epoch: 'e1', revision: 5, base: 4, upserts: [], removes: [] } }, replica, new CertificateReplica());
  t.match(failed, /delta on e1\/4/, 'the reason names the base');
  t.equal(replica.revision, 1, 'the replica keeps its last good state');
});

t.test('certificates: checked again by the replica, waited for, removed', async (t) => {
  const mesh = await createTestMesh();
  const id = 'spiffe://cluster.local/ns/shop/sa/a';
  const cert = await mesh.issue(id);
  const replica = new CertificateReplica();
  const waiting = replica.whenReady(id, AbortSignal.timeout(5000));
  const issued = issuedOf(cert);
  t.ok(issued, 'the main thread sends the PEMs');
  t.equal(applyReplication({ type: 'certificate', identity: id, issued }, new StateStore(), replica), undefined, 'applied');
  t.equal((await waiting).serialNumber, cert.serialNumber, 'a connection waiting for the first certificate gets it');
  t.ok(replica.secureContextFor(id), 'with a TLS context of the replica');

  const other = await mesh.issue('spiffe://cluster.local/ns/shop/sa/b');
  const forged = { ...(issuedOf(cert) as NonNullable<ReturnType<typeof issuedOf>>), keyPem: other.tlsCredentials().key };
  t.match(applyReplication({ type: 'certificate', identity: id, issued: forged }, new StateStore(), replica), /does not match the private key/, 'a key that does not match is refused');
  t.equal(replica.certificateFor(id)?.serialNumber, cert.serialNumber, 'and the certificate in use stays');

  applyReplication({ type: 'certificate', identity: id, issued: null }, new StateStore(), replica);
  t.equal(replica.certificateFor(id), undefined, 'removed');
  // Not AbortSignal.timeout(): its timer does not keep the test alive.
  const abort = new AbortController();
  setTimeout(() => abort.abort(new Error('gave up')), 50);
  await t.rejects(replica.whenReady(id, abort.signal), /gave up/, 'a wait ends with its signal');
});
