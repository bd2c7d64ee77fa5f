// The stop decision when the DaemonSet watch lags the SIGTERM. On a loaded real node the kubelet's
// SIGTERM (after `helm uninstall`) once reached an agent before its watch delivered the DaemonSet's
// deletion, and the agent left weft-cni in the node's chain: new pods there could not start. So a
// stopping agent without a successor lists the DaemonSet once more (DaemonSetWatch.confirm). Here
// the real drainAndStop runs against a real HTTPS server standing in for the API server: its
// watch stays silent (the lag), and the second list says what the API server knows by then. The
// CNI directories are temporary ones; only the redirector is a stand-in (no nftables here).
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UNINSTALLED_STUB } from '../cni/uninstalled-stub.ts';
import { drainAndStop } from '../drain.ts';
import { stopConfig, stoppingAgent } from '../testing/stopping-agent.ts';
import { DaemonSetWatch } from './daemonset-watch.ts';

const NS = 'weft-system';
const NAME = 'weft-agent';

const dir = await mkdtemp(join(tmpdir(), 'weft-stop-confirm-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const [key, cert, tokenFile] = ['key.pem', 'cert.pem', 'token'].map((f) => join(dir, f)) as [string, string, string];
await promisify(execFile)('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=apiserver', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
]);
await writeFile(tokenFile, 'a-token\n');

const ds = (rv: string, extra: Record<string, unknown> = {}) => ({ kind: 'DaemonSet', metadata: { name: NAME, namespace: NS, uid: 'uid-1', resourceVersion: rv, ...extra } });
const json = (status: number, body: unknown) => (res: ServerResponse) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
const listOf = (rv: string, items: unknown[]) => json(200, { kind: 'DaemonSetList', metadata: { resourceVersion: rv }, items });

/** Lists answered from `lists` in order (the last repeats); every watch is accepted and stays silent. */
async function apiServer(t: Test, lists: ((res: ServerResponse) => void)[]): Promise<{ url: string; listed: () => number }> {
  let n = 0;
  const server = createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    if (new URL(req.url ?? '/', 'https://x').searchParams.get('watch') === '1') {
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      return;
    }
    lists[Math.min(n++, lists.length - 1)]?.(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, listed: () => n };
}

/** A node's CNI directories with Weft chained, and an agent around the real watch, stopped as the kubelet stops it. */
async function stopAgent(t: Test, url: string): Promise<{ conflist: string; binary: string; logs: string[] }> {
  const node = await mkdtemp(join(dir, 'node-'));
  const [binDir, confDir, stateDir] = ['bin', 'net.d', 'state'].map((d) => join(node, d)) as [string, string, string];
  for (const d of [binDir, confDir, stateDir]) await mkdir(d);
  await writeFile(join(confDir, '10-test.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'test', plugins: [{ type: 'ptp' }, { type: 'weft-cni' }] }));
  await writeFile(join(binDir, 'weft-cni'), '#!/bin/sh\n# the real plugin\n', { mode: 0o755 });

  const logs: string[] = [];
  const watch = new DaemonSetWatch({ namespace: NS, name: NAME, access: { server: url, caFile: cert, tokenFile }, log: (_l, msg, f) => void logs.push(`${msg} ${JSON.stringify(f ?? {})}`) });
  // The watch has listed (present) and is open: the state a healthy agent is in.
  for (let i = 0; i < 100 && !watch.snapshot().watching; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(watch.state(), 'present', 'before the stop the watch has the DaemonSet present');

  const cfg = stopConfig({ stateDir, drainMs: 1000, binDir, confDir });
  const agent = stoppingAgent(cfg, {
    ownDaemonSet: watch,
  });
  await drainAndStop(agent, 'SIGTERM');
  return { conflist: await readFile(join(confDir, '10-test.conflist'), 'utf8'), binary: await readFile(join(binDir, 'weft-cni'), 'utf8'), logs };
}

t.test('the DaemonSet is being deleted but the watch has not said so: the stop takes Weft off the node', async (t) => {
  const api = await apiServer(t, [listOf('10', [ds('10')]), listOf('12', [ds('12', { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: ['foregroundDeletion'] })])]);
  const node = await stopAgent(t, api.url);
  t.equal(api.listed(), 2, 'the stopping agent listed the DaemonSet again');
  t.notMatch(node.conflist, /weft-cni/, 'weft-cni is out of the chain');
  t.equal(node.binary, UNINSTALLED_STUB, 'the plugin is replaced by its tear-down stub');
});

t.test('gone by now (the watch missed it): the stop takes Weft off the node', async (t) => {
  const api = await apiServer(t, [listOf('10', [ds('10')]), listOf('13', [])]);
  const node = await stopAgent(t, api.url);
  t.notMatch(node.conflist, /weft-cni/, 'weft-cni is out of the chain');
});

t.test('still there (a deleted pod, a node drain): the node stays meshed', async (t) => {
  const api = await apiServer(t, [listOf('10', [ds('10')])]);
  const node = await stopAgent(t, api.url);
  t.match(node.conflist, /weft-cni/, 'weft-cni stays chained');
  t.match(node.binary, /the real plugin/, 'the plugin stays');
});

t.test('the second list is refused (RBAC already gone, no hook): the watch state stands', async (t) => {
  const api = await apiServer(t, [listOf('10', [ds('10')]), json(403, { kind: 'Status', message: 'forbidden' })]);
  const node = await stopAgent(t, api.url);
  t.match(node.conflist, /weft-cni/, 'weft-cni stays chained (fail closed)');
  t.ok(node.logs.some((l) => l.startsWith('checking the agent DaemonSet at stop failed') && l.includes('HTTP 403')), 'the refusal is logged');
});
