// A stand-in for the Kubernetes API server, serving only the two GETs weft-cni's fallback makes
// (a pod, its namespace) over real TLS with bearer-token checks. A double is acceptable here
// only because the plugin's API client is a few lines of plain https; the real API path is
// exercised against kube-apiserver in the playground.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface FakeObjects {
  /** key "namespace/name" */
  pods: Record<string, { uid: string; annotations?: Record<string, string> }>;
  namespaces: Record<string, { labels?: Record<string, string> }>;
}

export interface FakeKubeApi {
  url: string;
  caFile: string;
  tokenFile: string;
  token: string;
  /** Every request's path and whether it carried the right token. */
  requests: { path: string; authorized: boolean }[];
  close(): Promise<void>;
}

export async function startFakeKubeApi(dir: string, objects: FakeObjects): Promise<FakeKubeApi> {
  const keyFile = join(dir, 'api.key');
  const caFile = join(dir, 'api.crt');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=fake-kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', keyFile, '-out', caFile,
  ]);
  const token = `test-token-${Math.random().toString(36).slice(2)}`;
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });

  const requests: FakeKubeApi['requests'] = [];
  const server = createServer({ key: await readFile(keyFile), cert: await readFile(caFile) }, (req, res) => {
    const path = req.url ?? '';
    const authorized = req.headers.authorization === `Bearer ${token}`;
    requests.push({ path, authorized });
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!authorized) return reply(401, { kind: 'Status', code: 401, reason: 'Unauthorized' });
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
    if (m) {
      const pod = objects.pods[`${decodeURIComponent(m[1] ?? '')}/${decodeURIComponent(m[2] ?? '')}`];
      if (!pod) return reply(404, { kind: 'Status', code: 404 });
      return reply(200, { kind: 'Pod', apiVersion: 'v1', metadata: { name: m[2], namespace: m[1], uid: pod.uid, annotations: pod.annotations } });
    }
    m = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path);
    if (m) {
      const ns = objects.namespaces[decodeURIComponent(m[1] ?? '')];
      if (!ns) return reply(404, { kind: 'Status', code: 404 });
      return reply(200, { kind: 'Namespace', apiVersion: 'v1', metadata: { name: m[1], labels: ns.labels } });
    }
    reply(404, { kind: 'Status', code: 404 });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    caFile,
    tokenFile,
    token,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
