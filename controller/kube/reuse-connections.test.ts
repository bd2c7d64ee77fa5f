// API requests share connections (reuse-connections.ts): several requests through a real
// @kubernetes/client-node client, against a local HTTPS server standing in for the API server,
// make one TLS connection, not one each; and a changed CA (a rotation) gets a new pool.
import t from 'tap';
import { createServer } from 'node:https';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRoot } from '../ca/root.ts';
import { issueServingCert } from '../tls/serving-cert.ts';
import { reuseConnections } from './reuse-connections.ts';

async function apiServer(): Promise<{ url: string; ca: string; handshakes: () => number; close: () => Promise<void> }> {
  const root = await createRoot({ trustDomain: 'cluster.local' });
  const serving = await issueServingCert(root.root, { spiffeId: 'spiffe://cluster.local/ns/default/sa/kube-apiserver', hosts: ['127.0.0.1'] });
  let handshakes = 0;
  const server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }));
  });
  server.on('secureConnection', () => handshakes++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ca: root.certificatePem,
    handshakes: () => handshakes,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

async function kubeConfig(dir: string, url: string, ca: string, reuse: boolean): Promise<KubeConfig> {
  const caFile = join(dir, 'ca.crt');
  await writeFile(caFile, ca);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, caFile }],
    users: [{ name: 'u', token: 'token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return reuse ? reuseConnections(kc) : kc;
}

t.test('requests share one connection', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-kube-reuse-'));
  const server = await apiServer();
  t.teardown(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const plain = (await kubeConfig(dir, server.url, server.ca, false)).makeApiClient(CoreV1Api);
  for (let i = 0; i < 3; i++) await plain.readNamespace({ name: 'default' });
  const without = server.handshakes();
  t.equal(without, 3, 'without it, the library connects once per request (what this works around)');

  const kc = await kubeConfig(dir, server.url, server.ca, true);
  const api = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < 10; i++) await api.readNamespace({ name: 'default' });
  // (undici opens a second connection after the first request, then keeps to it.)
  t.ok(server.handshakes() - without <= 2, `10 requests one after another: ${server.handshakes() - without} connection(s)`);
  const beforeParallel = server.handshakes();
  await Promise.all([1, 2, 3].map(() => api.readNamespace({ name: 'default' })));
  t.ok(server.handshakes() - beforeParallel <= 2, `3 at once: the idle one is reused (${server.handshakes() - beforeParallel} more)`);

  // The same server under another CA file content: a new pool (rotation takes effect).
  const other = await createRoot({ trustDomain: 'cluster.local' });
  await writeFile(join(dir, 'ca.crt'), `${server.ca.trimEnd()}\n${other.certificatePem}`);
  const before = server.handshakes();
  await api.readNamespace({ name: 'default' });
  t.equal(server.handshakes() - before, 1, 'a changed CA bundle connects anew');
});
