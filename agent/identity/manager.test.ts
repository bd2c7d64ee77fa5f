// The certificate manager against the real mesh CA, with short-lived (4 s) certificates and real
// timers: renewal, retry after failure, dropping identities, and what the snapshot shows.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { inspect } from 'node:util';
import t from 'tap';
import { MeshCa } from '../../controller/ca/ca.ts';
import { createRoot } from '../../controller/ca/root.ts';
import { WorkloadCertificate } from './certificate.ts';
import { CertificateManager, type CertificateEvent, type FetchCertificate } from './manager.ts';
import { parseSpiffeId } from './spiffe.ts';

const CERT_TTL_MS = 4000;
const { root } = await createRoot({ trustDomain: 'cluster.local' });
const ca = new MeshCa(root, { ttlMs: CERT_TTL_MS, backdateMs: 0 });

const A = 'spiffe://cluster.local/ns/shop/sa/checkout';
const B = 'spiffe://cluster.local/ns/shop/sa/cart';

/** The CA behind an in-process "transport" that the test can break. */
function caTransport(): { fetch: FetchCertificate; calls: string[]; failing: boolean } {
  const transport = {
    calls: [] as string[],
    failing: false,
    fetch: async (identity: string, csrPem: string) => {
      transport.calls.push(identity);
      if (transport.failing) throw Object.assign(new Error('controller unreachable'), { code: 'ECONNREFUSED' });
      const { namespace, serviceAccount } = parseSpiffeId(identity);
      const signed = await ca.sign(csrPem, { namespace, serviceAccount });
      return { chainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem };
    },
  };
  return transport;
}

function recordEvents(): { events: CertificateEvent[]; onEvent: (e: CertificateEvent) => void; next: (type: CertificateEvent['type']) => Promise<CertificateEvent> } {
  const events: CertificateEvent[] = [];
  const waiting: { type: string; resolve: (e: CertificateEvent) => void }[] = [];
  return {
    events,
    onEvent: (event) => {
      events.push(event);
      const i = waiting.findIndex((w) => w.type === event.type);
      if (i >= 0) waiting.splice(i, 1)[0]?.resolve(event);
    },
    next: (type) => new Promise((resolve) => waiting.push({ type, resolve })),
  };
}

t.test('renews at half life and switches to the new certificate', async (t) => {
  const transport = caTransport();
  const recorder = recordEvents();
  const manager = new CertificateManager({ fetch: transport.fetch, onEvent: recorder.onEvent });
  t.teardown(() => manager.close());

  manager.add(A);
  const first = await manager.whenReady(A);
  t.equal(manager.snapshot()[0]?.state, 'ready');
  const firstContext = manager.secureContextFor(A);
  t.ok(firstContext, 'a secure context is served');

  const renewed = (await recorder.next('issued')) as Extract<CertificateEvent, { type: 'issued' }>;
  const elapsed = Date.now() - first.notBefore.getTime();
  // Due between 45 % and 50 % of 4 s after notBefore (X.509 rounds notBefore down to the second).
  t.ok(elapsed >= 0.45 * CERT_TTL_MS && elapsed < 0.5 * CERT_TTL_MS + 1000, `renewed ${elapsed} ms after notBefore`);
  t.not(renewed.serialNumber, first.serialNumber, 'a new certificate');
  t.equal(manager.certificateFor(A)?.serialNumber, renewed.serialNumber, 'the new certificate is served');
  t.not(manager.secureContextFor(A), firstContext, 'with a new secure context');
  t.equal(transport.calls.length, 2);
});

t.test('keeps serving the old certificate while fetches fail, then recovers', async (t) => {
  const transport = caTransport();
  const recorder = recordEvents();
  const manager = new CertificateManager({ fetch: transport.fetch, onEvent: recorder.onEvent, retryInitialDelayMs: 200, retryMaxDelayMs: 400 });
  t.teardown(() => manager.close());

  manager.add(A);
  const first = await manager.whenReady(A);
  transport.failing = true;
  const failure = (await recorder.next('fetch-failed')) as Extract<CertificateEvent, { type: 'fetch-failed' }>;
  t.equal(failure.code, 'ECONNREFUSED', 'the transport error code is kept');
  await recorder.next('fetch-failed'); // and it retries

  const [status] = manager.snapshot();
  t.equal(status?.state, 'renewing');
  t.ok((status?.failures ?? 0) >= 2, `${status?.failures} failures counted`);
  t.equal(status?.lastError?.code, 'ECONNREFUSED');
  t.equal(manager.certificateFor(A)?.serialNumber, first.serialNumber, 'the old certificate is still served');

  transport.failing = false;
  const renewed = (await recorder.next('issued')) as Extract<CertificateEvent, { type: 'issued' }>;
  t.ok(Date.now() < first.notAfter.getTime(), 'recovered before the old certificate expired');
  t.equal(manager.certificateFor(A)?.serialNumber, renewed.serialNumber);
  t.equal(manager.snapshot()[0]?.state, 'ready');
  t.equal(manager.snapshot()[0]?.failures, 0);
});

t.test('an expired certificate is no longer served', async (t) => {
  const transport = caTransport();
  const recorder = recordEvents();
  const manager = new CertificateManager({ fetch: transport.fetch, onEvent: recorder.onEvent, retryInitialDelayMs: 500, retryMaxDelayMs: 500 });
  t.teardown(() => manager.close());
  manager.add(A);
  await manager.whenReady(A);
  transport.failing = true;
  await recorder.next('expired');
  t.equal(manager.certificateFor(A), undefined);
  t.equal(manager.secureContextFor(A), undefined);
  t.equal(manager.snapshot()[0]?.state, 'expired');
});

t.test('a certificate for the wrong identity is refused and retried', async (t) => {
  const transport = caTransport();
  const recorder = recordEvents();
  let lie = true;
  const manager = new CertificateManager({
    onEvent: recorder.onEvent,
    retryInitialDelayMs: 50,
    fetch: async (identity, csrPem, signal) => {
      if (!lie) return transport.fetch(identity, csrPem, signal);
      lie = false;
      const signed = await ca.sign(csrPem, { namespace: 'kube-system', serviceAccount: 'admin' });
      return { chainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem };
    },
  });
  t.teardown(() => manager.close());
  manager.add(A);
  const failure = (await recorder.next('fetch-failed')) as Extract<CertificateEvent, { type: 'fetch-failed' }>;
  t.equal(failure.code, 'CERTIFICATE_INVALID');
  t.equal((await manager.whenReady(A)).identity, A, 'the retry gets the right certificate');
});

t.test('drops identities that are no longer needed', async (t) => {
  const transport = caTransport();
  const manager = new CertificateManager({ fetch: transport.fetch });
  t.teardown(() => manager.close());
  manager.setIdentities([A, B]);
  await Promise.all([manager.whenReady(A), manager.whenReady(B)]);
  manager.setIdentities([B]);
  t.same(manager.identities(), [B]);
  t.same(manager.snapshot().map((s) => s.identity), [B]);
  t.equal(manager.secureContextFor(A), undefined);
  await t.rejects(manager.whenReady(A), { code: 'IDENTITY_REMOVED' });

  // A removal while the fetch is in flight: the late answer is dropped, and waiters are told.
  transport.calls.length = 0;
  manager.add(A);
  const waiting = manager.whenReady(A);
  manager.remove(A);
  await t.rejects(waiting, { code: 'IDENTITY_REMOVED' });
  t.same(manager.identities(), [B]);
  t.throws(() => manager.setIdentities(['spiffe://cluster.local/ns/a/sa/b/']), { code: 'SPIFFE_ID_INVALID' });
  t.same(manager.identities(), [B], 'an invalid set changes nothing');
});

t.test('the snapshot and the certificate object never show key material', async (t) => {
  const transport = caTransport();
  const manager = new CertificateManager({ fetch: transport.fetch });
  t.teardown(() => manager.close());
  manager.add(A);
  const certificate = await manager.whenReady(A);
  const key = certificate.tlsCredentials().key;
  const keyBody = key.split('\n')[1] as string;
  t.match(key, /BEGIN PRIVATE KEY/);

  const snapshot = JSON.stringify(manager.snapshot());
  t.match(snapshot, /"serialNumber":"[0-9a-f]{32}"/);
  t.match(snapshot, /"notAfter":/);
  for (const shown of [snapshot, JSON.stringify(certificate), inspect(certificate, { depth: 5, showHidden: true })]) {
    t.notMatch(shown, /PRIVATE KEY/);
    t.notOk(shown.includes(keyBody), 'no key bytes');
  }
});

t.test('two identities complete a TLS 1.3 mutual handshake with their secure contexts', async (t) => {
  const transport = caTransport();
  const manager = new CertificateManager({ fetch: transport.fetch });
  t.teardown(() => manager.close());
  manager.setIdentities([A, B]);
  const [server, client] = await Promise.all([manager.whenReady(A), manager.whenReady(B)]);
  t.type(server, WorkloadCertificate);

  const listener = tls.createServer({ ...server.tlsCredentials(), requestCert: true, rejectUnauthorized: true });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.teardown(() => listener.close());
  const accepted = once(listener, 'secureConnection') as Promise<[tls.TLSSocket]>;
  const socket = tls.connect({
    host: '127.0.0.1',
    port: (listener.address() as AddressInfo).port,
    secureContext: manager.secureContextFor(B),
    checkServerIdentity: () => undefined,
  });
  await once(socket, 'secureConnect');
  const [serverSide] = await accepted;
  t.equal(socket.getProtocol(), 'TLSv1.3');
  t.match(socket.getCipher().name, /^TLS_AES_(128|256)_GCM_SHA(256|384)$/);
  t.ok(serverSide.authorized, 'the server verified the client chain');
  t.equal(serverSide.getPeerX509Certificate()?.subjectAltName, `URI:${B}`);
  t.equal(socket.getPeerX509Certificate()?.subjectAltName, `URI:${A}`);
  socket.destroy();
  serverSide.destroy();
  t.ok(client);
});

t.test('retryFailedNow: a failed identity is fetched at once instead of after its backoff', async (t) => {
  const transport = caTransport();
  transport.failing = true;
  const recorder = recordEvents();
  // A backoff long enough that only retryFailedNow can explain a fetch within the test.
  const manager = new CertificateManager({ fetch: transport.fetch, onEvent: recorder.onEvent, retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 });
  t.teardown(() => manager.close());
  manager.add(A);
  const failed = (await recorder.next('fetch-failed')) as Extract<CertificateEvent, { type: 'fetch-failed' }>;
  t.ok(failed.retryAt.getTime() - Date.now() > 20_000, 'the next attempt is far off');
  t.equal(manager.retryFailedNow(), 1, 'one failed identity is retried');
  t.equal(manager.retryFailedNow(), 0, 'not twice while its fetch runs');
  transport.failing = false;
  const issued = manager.whenReady(A);
  t.equal(manager.retryFailedNow(), 0, 'a fetch in flight is not restarted');
  const started = Date.now();
  await issued;
  t.ok(Date.now() - started < 5000, `issued ${Date.now() - started} ms later`);
  t.equal(manager.retryFailedNow(), 0, 'nothing left to retry once issued');
});

t.test('a fetch abandoned before it starts cannot end the process with an unhandled rejection', async (t) => {
  const transport = caTransport();
  transport.failing = true;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  t.teardown(() => void process.off('unhandledRejection', onRejection));
  // Closed while the key is being generated: the fetch is still called, with an aborted signal,
  // and its rejection must be handled.
  const manager = new CertificateManager({ fetch: transport.fetch });
  manager.add(A);
  manager.close();
  while (transport.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  t.same(rejections, [], 'no unhandled rejection');
});
