// The uninstall hook (pre-delete.ts) against a real HTTPS server standing in for the API server:
// it deletes the agent DaemonSet in the foreground, then waits while agent pods run, and ends when
// they are gone or have been terminating for the settle time; it never fails helm's uninstall.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { agentPods, preDelete } from './pre-delete.ts';

const dir = await mkdtemp(join(tmpdir(), 'weft-pre-delete-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const [key, cert, tokenFile] = ['key.pem', 'cert.pem', 'token'].map((f) => join(dir, f)) as [string, string, string];
await promisify(execFile)('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=apiserver', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
]);
await writeFile(tokenFile, 'hook-token\n');

const agentPod = (name: string, terminating: boolean) => ({
  metadata: { name, ownerReferences: [{ kind: 'DaemonSet', name: 'weft-agent' }], ...(terminating ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
});
const otherPod = { metadata: { name: 'weft-controller-x', ownerReferences: [{ kind: 'ReplicaSet', name: 'weft-controller-1' }] } };

interface Request {
  method: string;
  path: string;
  body: string;
}

/** Answers the DELETE with `deleteStatus`, and pod lists from `lists` in order (the last repeats). */
async function apiServer(t: Test, deleteStatus: number, lists: unknown[][]): Promise<{ url: string; requests: Request[] }> {
  const requests: Request[] = [];
  let n = 0;
  const server: Server = createServer({ key: await readFile(key), cert: await readFile(cert) }, (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', body });
      const send = (status: number, o: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      if (req.method === 'DELETE') return send(deleteStatus, deleteStatus === 404 ? { kind: 'Status', code: 404, message: 'not found' } : { kind: 'DaemonSet', metadata: { name: 'weft-agent', uid: 'u', resourceVersion: '5', deletionTimestamp: '2026-01-01T00:00:00Z' } });
      send(200, { kind: 'PodList', metadata: { resourceVersion: '6' }, items: lists[Math.min(n++, lists.length - 1)] });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const run = (url: string, opts: { settleMs?: number; limitMs?: number } = {}) =>
  preDelete({ access: { server: url, caFile: cert, tokenFile }, namespace: 'weft-system', name: 'weft-agent', log: () => undefined, pollMs: 20, settleMs: opts.settleMs ?? 10_000, limitMs: opts.limitMs ?? 10_000 });

t.test('deletes the DaemonSet in the foreground, then waits until its pods are gone', async (t) => {
  const api = await apiServer(t, 200, [[agentPod('a1', false), agentPod('a2', false), otherPod], [agentPod('a1', true), agentPod('a2', true), otherPod], [otherPod]]);
  t.equal(await run(api.url), 'stopped');
  const del = api.requests[0];
  t.equal(del?.method, 'DELETE');
  t.equal(del?.path, '/apis/apps/v1/namespaces/weft-system/daemonsets/weft-agent');
  t.match(JSON.parse(del?.body ?? '{}'), { propagationPolicy: 'Foreground' }, 'foreground: the DaemonSet is marked deleted before its pods are');
  t.equal(api.requests.filter((r) => r.method === 'GET').length, 3, 'listed the pods until the agent pods were gone');
});

t.test('a 202 (finalizers pending) is a deletion too', async (t) => {
  const api = await apiServer(t, 202, [[]]);
  t.equal(await run(api.url), 'stopped');
});

t.test('pods that stay terminating (a node that is down) are waited for only for the settle time', async (t) => {
  const api = await apiServer(t, 200, [[agentPod('a1', true)]]);
  const started = performance.now();
  t.equal(await run(api.url, { settleMs: 200 }), 'settled');
  t.ok(performance.now() - started >= 200, 'not before the settle time');
});

t.test('a pod that is not even terminating is waited for up to the limit', async (t) => {
  const api = await apiServer(t, 200, [[agentPod('a1', false)]]);
  t.equal(await run(api.url, { settleMs: 50, limitMs: 300 }), 'timed out');
});

t.test('no DaemonSet (deleted already): nothing to wait for', async (t) => {
  const api = await apiServer(t, 404, [[]]);
  t.equal(await run(api.url), 'absent');
  t.equal(api.requests.length, 1);
});

t.test('refused: reported, and the hook does not fail the uninstall', async (t) => {
  const api = await apiServer(t, 403, [[]]);
  t.equal(await run(api.url), 'failed');
  t.equal(await preDelete({ access: { server: null, caFile: cert, tokenFile }, namespace: 'weft-system', name: 'weft-agent', log: () => undefined }), 'failed', 'no API server');
});

t.test('agentPods: only the DaemonSet’s pods; a malformed list is an error', async (t) => {
  t.same(agentPods({ items: [agentPod('a', true), otherPod, { metadata: {} }, {}, null, { metadata: { name: 'b', ownerReferences: [null] } }] }, 'weft-agent'), [{ name: 'a', terminating: true }]);
  t.throws(() => agentPods({ items: 'x' }, 'weft-agent'));
});
