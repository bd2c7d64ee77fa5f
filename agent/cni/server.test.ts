import t from 'tap';
import { spawn } from 'node:child_process';
import { lstat, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PodAddRequest } from '../../api/cni.ts';
import { createCniServer } from './server.ts';
import type { CniServerLog } from './server.ts';
import { RecordingEnroller } from './test-enroller.ts';
import { EnrollerError } from './enroller.ts';

const quiet: CniServerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

interface LogEntry {
  level: 'info' | 'warn' | 'error';
  msg: string;
  fields?: Record<string, unknown>;
}
function recordingLog(): { log: CniServerLog; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  return {
    entries,
    log: {
      info: (msg, fields) => entries.push({ level: 'info', msg, fields }),
      warn: (msg, fields) => entries.push({ level: 'warn', msg, fields }),
      error: (msg, fields) => entries.push({ level: 'error', msg, fields }),
    },
  };
}

const addRequest: PodAddRequest = {
  pod: { namespace: 'mesh-shop', name: 'cart-0', uid: 'uid-1' },
  containerId: 'c0ffee',
  ifname: 'eth0',
  netns: '/run/netns/cart-0',
  ips: ['10.1.0.7'],
  hostInterface: 'veth0a1b',
};

async function tempSocket(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-cni-srv-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'cni.sock');
}

interface Answer {
  status: number;
  body: unknown;
}

/** An HTTP request over the unix socket, like the plugin (or curl --unix-socket) makes. */
function call(socketPath: string, method: string, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw bytes on a fresh connection; resolves with whatever the server sent before closing. */
function raw(socketPath: string, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socketPath);
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(text));
    c.end(bytes);
  });
}

t.test('listens on a socket only its owner can use, and removes it on close', async (t) => {
  const socketPath = await tempSocket(t);
  const server = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: quiet });
  await server.listen();
  const st = await lstat(socketPath);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600);
  t.same(await call(socketPath, 'GET', '/v1/status'), { status: 200, body: { ready: true } });
  await server.close();
  await t.rejects(lstat(socketPath), { code: 'ENOENT' });
});

t.test('ADD, CHECK, DEL and GC reach the enroller with the request as sent', async (t) => {
  const socketPath = await tempSocket(t);
  const enroller = new RecordingEnroller();
  const server = createCniServer({ socketPath, enroller, log: quiet });
  await server.listen();
  t.teardown(() => server.close());

  t.same(await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest)), { status: 200, body: { result: 'enrolled' } });
  t.same(enroller.calls[0], { op: 'enrol', req: addRequest });
  t.same(await call(socketPath, 'POST', '/v1/pods/check', JSON.stringify(addRequest)), { status: 200, body: { result: 'enrolled' } });

  const other = { ...addRequest, pod: { ...addRequest.pod, namespace: 'plain' }, containerId: 'beef' };
  t.same((await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(other))).body, { result: 'notMeshed', reason: 'test: not opted in' });

  const del = { pod: addRequest.pod, containerId: 'c0ffee', ifname: 'eth0', netns: null, ips: [] };
  t.same((await call(socketPath, 'POST', '/v1/pods/del', JSON.stringify(del))).body, { result: 'released' });
  t.same((await call(socketPath, 'POST', '/v1/pods/del', JSON.stringify(del))).body, { result: 'notEnrolled' }, 'DEL twice');
  t.same((await call(socketPath, 'POST', '/v1/pods/check', JSON.stringify(addRequest))).body, {
    result: 'missing',
    reason: 'test: no enrolment for this attachment',
  });

  await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest));
  const gc = await call(socketPath, 'POST', '/v1/gc', JSON.stringify({ validAttachments: [] }));
  t.same(gc, { status: 200, body: { released: 1 } });
});

t.test('malformed requests are refused with a reason, and the next good one is served', async (t) => {
  const socketPath = await tempSocket(t);
  const enroller = new RecordingEnroller();
  const { log, entries } = recordingLog();
  const server = createCniServer({ socketPath, enroller, log });
  await server.listen();
  t.teardown(() => server.close());

  // A client that sends half a request and stalls must not hold up anyone else.
  const stalled = createConnection(socketPath);
  stalled.write('POST /v1/pods/add HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{"pod":');
  t.teardown(() => stalled.destroy());

  const notJson = await call(socketPath, 'POST', '/v1/pods/add', '{"pod": ');
  t.same(notJson, { status: 400, body: { error: { code: 'BAD_REQUEST', message: 'body is not JSON' } } });

  const badField = await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify({ ...addRequest, ips: ['not-an-ip'] }));
  t.equal(badField.status, 400);
  t.match(badField.body, { error: { code: 'BAD_REQUEST', message: /^\$\.ips\[0\]: must be an IPv4 or IPv6 address/ } });

  t.match(await call(socketPath, 'GET', '/v1/pods/add'), { status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED' } } });
  t.match(await call(socketPath, 'POST', '/v2/pods/add', '{}'), { status: 404, body: { error: { code: 'NOT_FOUND' } } });
  const huge = JSON.stringify({ validAttachments: 'x'.repeat(2 * 1024 * 1024) });
  t.match(await call(socketPath, 'POST', '/v1/gc', huge), { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
  t.match(await raw(socketPath, 'this is not HTTP\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request/);

  t.equal(enroller.calls.length, 0, 'nothing malformed reached the enroller');
  t.same(
    entries.filter((e) => e.level === 'warn').map((e) => e.fields?.code ?? 'connection'),
    ['BAD_REQUEST', 'BAD_REQUEST', 'METHOD_NOT_ALLOWED', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'connection'],
    'each refusal is logged once, with its code',
  );
  t.same(await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest)), { status: 200, body: { result: 'enrolled' } });
  t.same(enroller.calls, [{ op: 'enrol', req: addRequest }]);
});

t.test('enroller failures and readiness travel as contract errors', async (t) => {
  const socketPath = await tempSocket(t);
  const enroller = new RecordingEnroller();
  const { log, entries } = recordingLog();
  const server = createCniServer({ socketPath, enroller, log });
  await server.listen();
  t.teardown(() => server.close());

  enroller.failNextEnrol = Object.assign(new Error('nft: set weft_pods is full'), { code: 'NFT_FAILED' });
  t.same(await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest)), {
    status: 500,
    body: { error: { code: 'ENROLLER_FAILED', message: 'NFT_FAILED: nft: set weft_pods is full' } },
  });

  enroller.failNextEnrol = new EnrollerError('NOT_READY', 'the controller has not announced pod shop/cart-0 yet');
  t.same(
    await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest)),
    { status: 503, body: { error: { code: 'NOT_READY', message: 'the controller has not announced pod shop/cart-0 yet' } } },
    'an enroller that cannot decide yet answers "not ready", so the plugin decides from the API server',
  );

  enroller.readiness = { ready: false, reason: 'waiting for the first workload snapshot' };
  const before = enroller.calls.length;
  t.same(await call(socketPath, 'POST', '/v1/pods/add', JSON.stringify(addRequest)), {
    status: 503,
    body: { error: { code: 'NOT_READY', message: 'waiting for the first workload snapshot' } },
  });
  t.equal(enroller.calls.length, before, 'enrol() is not called while not ready');
  t.same(await call(socketPath, 'GET', '/v1/status'), { status: 503, body: { ready: false, reason: 'waiting for the first workload snapshot' } });
  t.match(entries.filter((e) => e.level === 'error'), [{ msg: 'cni request failed', fields: { code: 'ENROLLER_FAILED' } }], 'one failure logged');
  t.notOk(entries.some((e) => /crashed/.test(e.msg)), 'no handler crashed along the way');
});

t.test('a stale socket from a killed agent is replaced; a live one or a plain file is not touched', async (t) => {
  const socketPath = await tempSocket(t);
  // A real previous agent: listens, then dies by SIGKILL, leaving its socket file behind.
  const previous = spawn(process.execPath, [
    '-e',
    `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`,
  ]);
  await new Promise((resolve) => previous.stdout.once('data', resolve));

  const blocked = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: quiet });
  await t.rejects(blocked.listen(), { code: 'SOCKET_IN_USE' }, 'a live agent keeps its socket');

  previous.kill('SIGKILL');
  await new Promise((resolve) => previous.once('exit', resolve));
  t.ok((await lstat(socketPath)).isSocket(), 'the dead agent left its socket file');

  const server = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: quiet });
  await server.listen();
  t.same(await call(socketPath, 'GET', '/v1/status'), { status: 200, body: { ready: true } });
  await server.close();

  await writeFile(socketPath, 'not a socket');
  const onFile = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: quiet });
  await t.rejects(onFile.listen(), { code: 'SOCKET_PATH_OCCUPIED' });
  t.equal(await readFile(socketPath, 'utf8'), 'not a socket', 'the file is left as it was');
  t.ok((await stat(socketPath)).isFile());
});
