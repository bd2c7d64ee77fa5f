// The DaemonSet watch under what a real API server sends only rarely, or never on purpose: a
// malformed line, a 410 Gone ERROR event, a watch that ends at once, a connection cut mid-stream.
// The server here is a real HTTPS server on 127.0.0.1 with a throw-away certificate that plays
// those faults in a fixed order; each request it gets is recorded. The watch against a real
// kube-apiserver (present, deleted, deleting, 403, dropped connections) is tests/uninstall.test.ts.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DaemonSetWatch, type DaemonSetState } from './daemonset-watch.ts';

const NS = 'weft-system';
const NAME = 'weft-agent';
const TOKEN = 'test-token-for-a-fake-server';

interface Seen {
  watch: boolean;
  resourceVersion: string | null;
  fieldSelector: string | null;
  authorization: string | undefined;
}

const dir = await mkdtemp(join(tmpdir(), 'weft-kube-watch-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const [key, cert, tokenFile] = ['key.pem', 'cert.pem', 'token'].map((f) => join(dir, f)) as [string, string, string];
await promisify(execFile)('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=apiserver', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
]);
await writeFile(tokenFile, `${TOKEN}\n`);

const ds = (rv: string, extra: Record<string, unknown> = {}) => ({ kind: 'DaemonSet', metadata: { name: NAME, namespace: NS, uid: 'uid-1', resourceVersion: rv, ...extra } });
const line = (o: unknown) => `${JSON.stringify(o)}\n`;

/** An HTTPS server answering lists and watches from the scripts, in order; the last one repeats. */
async function faultServer(t: Test, scripts: { list: ((res: ServerResponse) => void)[]; watch: ((res: ServerResponse) => void)[] }): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const n = { list: 0, watch: 0 };
  const server: Server = createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    const u = new URL(req.url ?? '/', 'https://x');
    const watch = u.searchParams.get('watch') === '1';
    seen.push({ watch, resourceVersion: u.searchParams.get('resourceVersion'), fieldSelector: u.searchParams.get('fieldSelector'), authorization: req.headers.authorization });
    const kind = watch ? 'watch' : 'list';
    const list = scripts[kind];
    const script = list[Math.min(n[kind]++, list.length - 1)];
    script?.(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const json = (status: number, body: unknown) => (res: ServerResponse) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
const listOf = (rv: string, items: unknown[]) => json(200, { kind: 'DaemonSetList', metadata: { resourceVersion: rv }, items });
/** A watch that sends these lines and then stays open. */
const stream = (...lines: string[]) => (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  res.flushHeaders();
  for (const l of lines) res.write(l);
};

function watchWith(url: string, logs: { level: string; msg: string; fields: Record<string, unknown> }[]): DaemonSetWatch {
  return new DaemonSetWatch({
    namespace: NS,
    name: NAME,
    access: { server: url, caFile: cert, tokenFile },
    log: (level, msg, fields = {}) => void logs.push({ level, msg, fields }),
    backoff: { firstMs: 50, maxMs: 200 },
  });
}

async function until(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a malformed line is logged and the watch starts over from a list; no crash', async (t) => {
  const server = await faultServer(t, {
    list: [listOf('10', [ds('10')])],
    watch: [stream(line({ type: 'MODIFIED', object: ds('11') }), '{"type":"MODIFIED","object":{\n'), stream()],
  });
  const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const w = watchWith(server.url, logs);
  t.teardown(() => w.close());
  await until('a second list', () => server.seen.filter((s) => !s.watch).length >= 2 && w.snapshot().watching);
  t.equal(w.state(), 'present', 'the state the valid events gave stands');
  t.ok(logs.some((l) => l.level === 'warn' && String(l.fields.error).startsWith('KUBE_DECODE')), 'the malformed event is logged with KUBE_DECODE');
  const requests = server.seen.map((s) => (s.watch ? `watch@${s.resourceVersion}` : 'list'));
  t.same(requests.slice(0, 4), ['list', 'watch@10', 'list', 'watch@10'], `list, watch, then list again: ${requests.join(' ')}`);
  t.ok(server.seen.every((s) => s.fieldSelector === `metadata.name=${NAME}` && s.authorization === `Bearer ${TOKEN}`), 'every request selects the one name, with the token');
});

t.test('410 Gone relists; a watch the server ends resumes from the last bookmark without a list', async (t) => {
  const gone = { type: 'ERROR', object: { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version: 10 (50)' } };
  const server = await faultServer(t, {
    list: [listOf('10', [ds('10')]), listOf('60', [ds('55')])],
    watch: [
      stream(line(gone)),
      (res) => {
        stream(line({ type: 'BOOKMARK', object: { kind: 'DaemonSet', metadata: { resourceVersion: '70' } } }))(res);
        res.end();
      },
      stream(),
    ],
  });
  const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const w = watchWith(server.url, logs);
  t.teardown(() => w.close());
  await until('the third watch', () => server.seen.filter((s) => s.watch).length >= 3);
  const requests = server.seen.map((s) => (s.watch ? `watch@${s.resourceVersion}` : 'list'));
  t.same(requests.slice(0, 5), ['list', 'watch@10', 'list', 'watch@60', 'watch@70'], `410: list again; the end of a watch: resume at the bookmark's version: ${requests.join(' ')}`);
  t.equal(w.state(), 'present');
  t.notOk(logs.some((l) => l.level === 'warn'), '410 and a watch that ends are normal: no warning');
});

t.test('a stream cut mid-event relists; a relist that no longer finds it is a deletion', async (t) => {
  const server = await faultServer(t, {
    list: [listOf('10', [ds('10')]), listOf('20', [])],
    watch: [
      (res) => {
        stream('{"type":"MODIFIED","obj')(res);
        setTimeout(() => res.socket?.destroy(), 50);
      },
      stream(),
    ],
  });
  const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const w = watchWith(server.url, logs);
  t.teardown(() => w.close());
  const states: DaemonSetState[] = [];
  await until('deleted', () => {
    if (states.at(-1) !== w.state()) states.push(w.state());
    return w.state() === 'deleted';
  });
  t.same(states.filter((s) => s !== 'unknown'), ['present', 'deleted'], 'present, then deleted on the relist');
  t.ok(logs.some((l) => l.level === 'warn' && String(l.fields.error).startsWith('KUBE_UNREACHABLE')), `the cut stream is logged: ${JSON.stringify(logs.map((l) => l.fields.error ?? l.msg))}`);
});

t.test('never seen: an empty list is not a deletion, and a 403 or 401 is not either', async (t) => {
  for (const [label, list] of [
    ['not found', listOf('10', [])],
    ['forbidden', json(403, { kind: 'Status', code: 403, reason: 'Forbidden', message: 'daemonsets.apps "weft-agent" is forbidden' })],
    ['unauthorized', json(401, { kind: 'Status', code: 401, reason: 'Unauthorized', message: 'Unauthorized' })],
  ] as const) {
    const server = await faultServer(t, { list: [list], watch: [stream()] });
    const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const w = watchWith(server.url, logs);
    t.teardown(() => w.close());
    await until(`${label}: a second list`, () => server.seen.length >= 2);
    t.equal(w.state(), 'unknown', `${label}: unknown`);
    t.match(w.lastError(), label === 'not found' ? /KUBE_NOT_FOUND/ : /KUBE_HTTP: .*HTTP 40[13]/, `${label}: ${w.lastError()}`);
    t.notOk(server.seen.some((s) => s.watch), `${label}: no watch without a list`);
    t.equal(logs.filter((l) => l.level === 'warn').length, 1, `${label}: the failure is logged once, however often it repeats`);
    await w.close();
  }
});

t.test('close() ends an open watch at once', async (t) => {
  const server = await faultServer(t, { list: [listOf('10', [ds('10')])], watch: [stream()] });
  const w = watchWith(server.url, []);
  t.teardown(() => w.close());
  await until('watching', () => w.snapshot().watching);
  const started = performance.now();
  await w.close();
  t.ok(performance.now() - started < 500, 'closed within 500 ms');
  t.equal(w.state(), 'present', 'the state stays readable after close');
  t.equal(w.snapshot().watching, false);
});
