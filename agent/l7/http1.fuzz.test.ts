// Fuzzing the HTTP/1 inspection pipeline: hostile bytes written to a real serveHttp() over a
// loopback socket or over a tunnel stream (an HTTP/2 CONNECT stream, the transport that once
// crashed the agent on a broken chunked body), in segments, sometimes reset part-way.
// Runs through tests/helpers/fuzz.ts (WEFT_FUZZ_SECONDS); seeds and past failures are in
// testdata/corpus/http1/.
//
// Inputs are grammar-aware: one to three request heads (methods, request-target forms, versions,
// the fields that matter to framing and policy: Host, Content-Length, Transfer-Encoding, Upgrade,
// repeated singletons) with bodies (fixed-length, chunked with right and wrong sizes, extensions,
// trailers, truncations), then byte-level mutations, split into writes at random points.
//
// The property, per input: no uncaught exception in the process; what comes back is nothing or
// starts with an HTTP/1.1 status line; the agent's session ends within the deadline once the
// client has finished (FIN) or reset; and a well-formed request on a new connection gets 200.
import fc from 'fast-check';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { jsonCorpus, runFuzz } from '../../tests/helpers/fuzz.ts';
import { nth, watchCrashes, within } from './fuzz-support.ts';
import type { L7Outcome } from './types.ts';
import { LOOPBACK, keepAliveAgent, request1, startFront, startHttp1Upstream, startTunnel } from './test-fixtures.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'http1');
const DEADLINE_MS = 6000;
const options = { idleTimeoutMs: 1500, limits: { headersTimeoutMs: 300, maxHeaderBytes: 8192 } };

export type Http1Input = { transport: 'socket' | 'tunnel'; writes: string[]; gapMs: number; reset: boolean };

// The generator --------------------------------------------------------------------------------

/** Mostly `likely`, sometimes `hostile`: most inputs must get past the parser to reach policy. */
const mostly = <T>(likely: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> => fc.oneof({ weight: 4, arbitrary: likely }, { weight: 1, arbitrary: hostile });

const method = mostly(fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE'), fc.constantFrom('PATCH', 'CONNECT', 'get', 'PRI', 'G ET', ''));
const path = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('/', '/items', '/admin', '/stream', '/big/70000', '/items?x=1') },
  fc.constantFrom('/', '/items', '/admin', '//admin', '/a/../admin', '/%61dmin', '/admin;x', '/public/..;/admin', '/a%2Fb', '/a\\b', '/stream', '/big/70000', '/cut', '/hangup', '*', '/%', '/%zz', '/?q=/../admin#x', 'http://admin.example/x', 'http://shop.example:80/admin', 'https://shop.example', 'http://user@shop.example/', 'shop.example:443', ''),
  fc.string({ maxLength: 30 }).map((s) => `/${s}`),
  fc.string({ unit: 'binary', maxLength: 20 }).map((s) => `/${s}`),
);
const version = mostly(fc.constantFrom('HTTP/1.1', 'HTTP/1.0'), fc.constantFrom('HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', ''));
const field = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(['x-tenant', 'a'], ['accept', '*/*'], ['content-type', 'text/plain'], ['authorization', 'Bearer fine'], ['user-agent', 'fuzz']) },
  fc.constantFrom(
    ['Host', 'shop.example'],
    ['host', 'admin.example'],
    ['Host', ''],
    ['authorization', 'Bearer stolen'],
    ['Authorization', 'Bearer fine'],
    ['content-length', '5'],
    ['Content-Length', '0'],
    ['content-length', '-1'],
    ['content-length', '99999999999999999999'],
    ['content-length', '5, 5'],
    ['transfer-encoding', 'chunked'],
    ['Transfer-Encoding', 'chunked, identity'],
    ['transfer-encoding', ' chunked'],
    ['transfer-encoding', 'xchunked'],
    ['connection', 'close'],
    ['connection', 'upgrade'],
    ['upgrade', 'websocket'],
    ['upgrade', 'h2c'],
    ['expect', '100-continue'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['x-tenant', 'a'],
    ['user-agent', 'fuzz'],
    [' host', 'x'],
    ['x-folded', 'a\r\n b'],
    ['x-nul', 'a\u0000b'],
    ['x-big', 'a'.repeat(9000)],
  ),
  fc.tuple(fc.stringMatching(/^[a-z-]{1,12}$/), fc.string({ maxLength: 30 })),
  fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 30 })),
);
const chunk = fc.oneof(
  fc.string({ maxLength: 20 }).map((data) => `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`),
  fc.constantFrom('zz\r\nnot a chunk\r\n', '5\r\nhi\r\n', '5;ext=1\r\nhello\r\n', 'FFFFFFFFFFFFFFFFFF\r\n', '3\r\nabcde\r\n', '\r\n', '5\nhello\n'),
);
const body = fc.oneof(
  fc.constant(''),
  fc.string({ maxLength: 40 }),
  fc.tuple(fc.array(chunk, { maxLength: 4 }), fc.constantFrom('0\r\n\r\n', '0\r\nx-trailer: 1\r\n\r\n', '', '0\r\n')).map(([chunks, last]) => chunks.join('') + last),
);
const request = fc.record({ method, path, version, fields: fc.array(field, { maxLength: 5 }), body, chunked: fc.boolean(), host: fc.boolean() }).map((r) => {
  const fields = [...(r.host ? [['host', 'shop.example']] : []), ...r.fields, ...(r.chunked ? [['transfer-encoding', 'chunked']] : [])];
  return `${r.method} ${r.path} ${r.version}\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n${r.body}`;
});
type Mutation = { at: number; op: 'flip' | 'insert' | 'delete' | 'truncate'; byte: number };
const mutation: fc.Arbitrary<Mutation> = fc.record({ at: fc.nat(), op: fc.constantFrom('flip', 'insert', 'delete', 'truncate'), byte: fc.integer({ min: 0, max: 255 }) });

function mutate(text: string, mutations: readonly Mutation[]): string {
  let out = text;
  for (const m of mutations) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    const c = String.fromCharCode(m.byte);
    if (m.op === 'flip') out = out.slice(0, at) + c + out.slice(at + 1);
    else if (m.op === 'insert') out = out.slice(0, at) + c + out.slice(at);
    else if (m.op === 'delete') out = out.slice(0, at) + out.slice(at + 1);
    else out = out.slice(0, at);
  }
  return out;
}

function split(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => (text.length === 0 ? 0 : c % text.length)))].sort((a, b) => a - b);
  const parts: string[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) parts.push(text.slice(from, p));
    from = Math.max(from, p);
  }
  parts.push(text.slice(from));
  return parts.filter((p) => p.length > 0);
}

const arbitrary: fc.Arbitrary<Http1Input> = fc
  .record({
    requests: fc.array(request, { minLength: 1, maxLength: 3 }),
    mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<Mutation[]>([]) }, { weight: 1, arbitrary: fc.array(mutation, { maxLength: 3 }) }),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
    transport: fc.constantFrom<'socket' | 'tunnel'>('socket', 'tunnel'),
    gapMs: fc.constantFrom(0, 0, 1, 10),
    reset: fc.boolean(),
  })
  .map(({ requests, mutations, cuts, transport, gapMs, reset }) => ({ transport, gapMs, reset, writes: split(mutate(requests.join(''), mutations), cuts) }));

const { encode, decode } = jsonCorpus<Http1Input>();

// The target -----------------------------------------------------------------------------------

const crashes = watchCrashes(t);
const upstream = await startHttp1Upstream(t);
const front = await startFront(t, upstream.port, options);
const tunnel = await startTunnel(t, upstream.port, undefined, options);
const tally = new Map<string, number>();

type Client = { write(s: string): void; finish(): void; reset(): void; received(): string; session: Promise<L7Outcome> };


async function socketClient(): Promise<Client> {
  const session = nth(front.outcomes, front.outcomes.length);
  const socket = net.connect({ host: LOOPBACK, port: front.port });
  socket.on('error', () => {});
  // Connected first: a socket reset before the handshake completes never reaches the agent.
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (c: Buffer) => received.push(c));
  return {
    write: (s) => void (socket.writable && socket.write(Buffer.from(s, 'latin1'))),
    finish: () => void socket.end(),
    reset: () => void socket.resetAndDestroy(),
    received: () => Buffer.concat(received).toString('latin1'),
    session,
  };
}

async function tunnelClient(): Promise<Client> {
  const session = nth(tunnel.outcomes, tunnel.outcomes.length);
  const stream = await tunnel.open();
  stream.on('error', () => {});
  const received: Buffer[] = [];
  stream.on('data', (c: Buffer) => received.push(c));
  return {
    write: (s) => void (stream.writable && stream.write(Buffer.from(s, 'latin1'))),
    finish: () => void stream.end(),
    // destroy(error) sends RST_STREAM at once; close(code) would wait for the writes to flush.
    reset: () => void stream.destroy(new Error('client reset')),
    received: () => Buffer.concat(received).toString('latin1'),
    session,
  };
}

const goodAgent = keepAliveAgent(t);

async function check(input: Http1Input): Promise<void> {
  const client = input.transport === 'tunnel' ? await tunnelClient() : await socketClient();
  for (const w of input.writes) {
    client.write(w);
    if (input.gapMs > 0) await sleep(input.gapMs);
  }
  if (input.reset) client.reset();
  else client.finish();
  // The agent's side must end: the session resolves once the client and the upstream are closed.
  await within(client.session, DEADLINE_MS, 'the session did not end after the client finished');
  crashes.rethrow();
  const answer = client.received();
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1];
  if (answer !== '' && status === undefined) throw new Error(`not an HTTP/1.1 answer: ${JSON.stringify(answer.slice(0, 80))}`);
  const key = `${input.transport}:${status ?? 'closed'}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
  const good = await within(request1(goodAgent, front.port, { path: '/after' }), DEADLINE_MS, 'a good request after the input got no answer');
  if (good.status !== 200) throw new Error(`a good request after the input got ${good.status}`);
}

t.test('hostile HTTP/1 bytes: an HTTP answer or a close, never a crash or a hang, and the agent keeps serving', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode, encode, check });
  t.comment(`http1: ${JSON.stringify(report)}`);
  t.comment(`outcomes (transport:first status): ${JSON.stringify(Object.fromEntries([...tally].sort((a, b) => b[1] - a[1])))}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
  t.ok(report.generated > 0, 'and new inputs generated');
});
