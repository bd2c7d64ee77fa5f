// Fuzzing the HBONE server where hostile bytes enter it after TLS: the CONNECT header set (names,
// values, order, duplicates, the `:authority` string) written frame by frame (testing/raw-h2.ts)
// over real TLS 1.3 with a valid workload certificate, to a real HboneServer in front of an echo
// destination. Runs through tests/helpers/fuzz.ts (WEFT_FUZZ_SECONDS); seeds and past failures
// are in testdata/corpus/connect-headers/. hostile.test.ts names the cases this grew from.
//
// An input is one stream: its header fields (as bytes, latin1), whether HEADERS carries
// END_STREAM, whether the block is split into CONTINUATION frames, and whether the client resets
// the stream right after sending it. Generated fields are mostly a CONNECT with an authority
// near the real one (IPv4/IPv6 spellings, ports, brackets, zones, junk), so that they reach the
// server's own checks rather than nghttp2's.
//
// The property, per input: within a deadline the stream is answered, reset, or the connection is
// closed; a 200 only for one CONNECT whose one `:authority` names the echo destination; no 'error'
// or rejection escapes; and every few inputs a good tunnel through a pool still echoes.
import t from 'tap';
import fc from 'fast-check';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import { runFuzz } from '../../tests/helpers/fuzz.ts';
import { parseAuthority } from './authority.ts';
import { FLAG, FRAME, frame, headerBlock, RawH2, rstStream, type HeaderField } from './testing/raw-h2.ts';
import { LOOPBACK, startLoopbackTunnel } from './testing/loopback-tunnel.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'connect-headers');
const DEADLINE_MS = 3_000;

const tunnel = await startLoopbackTunnel({ handshakeTimeoutMs: 2000 });
t.teardown(() => tunnel.close());
// Corpus files name the echo destination's port as $PORT: it changes with every run.
const PORT = String(tunnel.echoPort);
const GOOD = `${LOOPBACK}:${PORT}`;

export type StreamInput = { fields: [string, string][]; endStream: boolean; split: boolean; reset: boolean };

// Anything thrown where no one listens fails the current input instead of killing the run.
let escaped: unknown;
process.on('uncaughtException', (err) => (escaped ??= err));
process.on('unhandledRejection', (err) => (escaped ??= err));

const byte = fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b));
const junk = fc.array(byte, { maxLength: 12 }).map((a) => a.join(''));
const port = fc.oneof({ weight: 6, arbitrary: fc.constant(PORT) }, { weight: 1, arbitrary: fc.constantFrom('0', '65535', '65536', '080', '+1', '-1', '', ' 1', '1 ', '99999999999', '0x50') }, { weight: 1, arbitrary: junk });
const host = fc.oneof(
  { weight: 6, arbitrary: fc.constant(LOOPBACK) },
  { weight: 1, arbitrary: fc.constantFrom('127.0.0.2', '127.1', '0177.0.0.1', '127.000.000.001', '::1', '::ffff:127.0.0.1', '[::ffff:127.0.0.1]', '[::1]', '[fe80::1%lo]', '[127.0.0.1]', 'localhost', '', '[', ']', '[]', '127.0.0.1.', '２７.0.0.1') },
  { weight: 1, arbitrary: fc.ipV4().map((ip) => ip) },
  { weight: 1, arbitrary: fc.ipV6().map((ip) => `[${ip}]`) },
  { weight: 1, arbitrary: junk },
);
const authority = fc.oneof(
  { weight: 3, arbitrary: fc.constant(GOOD) },
  { weight: 6, arbitrary: fc.tuple(host, fc.constantFrom(':', '::', '', ':/'), port).map(([h, sep, p]) => `${h}${sep}${p}`) },
  // The good authority with a few bytes changed, inserted or cut.
  { weight: 3, arbitrary: fc.tuple(fc.nat(GOOD.length), fc.nat(2), byte).map(([at, cut, b]) => GOOD.slice(0, at) + b + GOOD.slice(at + cut)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')) },
);
const method = fc.oneof({ weight: 8, arbitrary: fc.constant('CONNECT') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'connect', 'CONNECT ', '', 'POST', 'PRI') });
const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('baggage', 'traceparent', 'tracestate', 'x-request-id', 'user-agent') },
  fc.constantFrom('baggage', 'traceparent', 'tracestate', 'x-forwarded-for', 'host', 'te', 'connection', 'content-length', 'Baggage', ':path', ':scheme', ':protocol', ':status', ':x', ''),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
  fc.array(byte, { minLength: 1, maxLength: 10 }).map((a) => a.join('')),
);
const baggage = fc.oneof(
  fc.constantFrom('k8s.namespace.name=shop,k8s.pod.name=frontend-a', 'k8s.pod.name=a,k8s.pod.name=b', 'k8s.namespace.name=%zz', ''),
  fc.array(fc.tuple(fc.constantFrom('k8s.namespace.name', 'k8s.pod.name', 'service.name', 'x'), junk), { maxLength: 6 }).map((kv) => kv.map(([k, v]) => `${k}=${v}`).join(',')),
);
const value = fc.oneof({ weight: 3, arbitrary: baggage }, { weight: 2, arbitrary: fc.stringMatching(/^[ -~]{0,20}$/) }, { weight: 1, arbitrary: junk }, { weight: 1, arbitrary: fc.nat(20_000).map((n) => 'v'.repeat(n)) });
const field: fc.Arbitrary<[string, string]> = fc.tuple(name, value);
const connect: fc.Arbitrary<[string, string][]> = fc
  .tuple(
    fc.oneof({ weight: 10, arbitrary: fc.tuple(fc.tuple(fc.constant(':method'), method)) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.constant(':method'), method), { maxLength: 2 }) }),
    fc.oneof({ weight: 10, arbitrary: fc.tuple(fc.tuple(fc.constant(':authority'), authority)) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.constant(':authority'), authority), { maxLength: 2 }) }),
    fc.array(field, { maxLength: 3 }),
    fc.oneof({ weight: 10, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  )
  .map(([m, a, rest, pseudoFirst]) => {
    const pseudo = [...m, ...a] as [string, string][];
    return pseudoFirst ? [...pseudo, ...rest] : [...rest, ...pseudo];
  });
const arbitrary: fc.Arbitrary<StreamInput> = fc.record({
  fields: fc.oneof({ weight: 8, arbitrary: connect }, { weight: 1, arbitrary: fc.array(field, { maxLength: 80 }) }),
  endStream: fc.boolean(),
  split: fc.boolean(),
  reset: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

const encode = (input: StreamInput): Buffer => Buffer.from(JSON.stringify(input, null, 1).replaceAll(`:${PORT}`, ':$PORT'), 'utf8');
const decode = (file: Buffer): StreamInput => JSON.parse(file.toString('utf8').replaceAll('$PORT', PORT)) as StreamInput;

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${DEADLINE_MS} ms`)), DEADLINE_MS)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

let checks = 0;
const outcomes = new Map<string, number>();

async function check(input: StreamInput): Promise<void> {
  const connection = await within(RawH2.connect(tunnel.port, tunnel.clientCert.secureContext), 'TLS handshake');
  try {
    const fields: HeaderField[] = input.fields.map(([n, v]) => [Buffer.from(n, 'latin1'), Buffer.from(v, 'latin1')]);
    const block = headerBlock(fields);
    const flags = input.endStream ? FLAG.END_STREAM : 0;
    if (input.split && block.length > 1) {
      const half = Math.floor(block.length / 2);
      connection.write(Buffer.concat([frame(FRAME.HEADERS, flags, 1, block.subarray(0, half)), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(half))]));
    } else {
      connection.write(frame(FRAME.HEADERS, flags | FLAG.END_HEADERS, 1, block));
    }
    let outcome: Awaited<ReturnType<RawH2['outcome']>>;
    if (input.reset) {
      // A reset stream may get no answer at all: a PING's ACK says the server has read that far.
      connection.write(Buffer.concat([rstStream(1), frame(FRAME.PING, 0, 0, Buffer.alloc(8))]));
      await connection.until((frames) => frames.some((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0), DEADLINE_MS);
      outcome = await connection.outcome(1, 0);
    } else {
      outcome = await connection.outcome(1, DEADLINE_MS);
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    // A reset stream may legitimately get no answer; any other stream must get one.
    if (outcome === 'nothing' && !input.reset) throw new Error('the stream got no answer, reset or GOAWAY');
    const ok = connection.frames.some((f) => f.streamId === 1 && f.type === FRAME.HEADERS && f.payload[0] === 0x88);
    if (ok) {
      const methods = input.fields.filter(([n]) => n === ':method').map(([, v]) => v);
      const authorities = input.fields.filter(([n]) => n === ':authority').map(([, v]) => v);
      // Other spellings of the same address (IPv4-mapped IPv6) are the same destination.
      const target = authorities.length === 1 ? parseAuthority(authorities[0]) : undefined;
      if (methods.join() !== 'CONNECT' || target?.ip !== LOOPBACK || target.port !== tunnel.echoPort) {
        throw new Error(`200 for :method ${JSON.stringify(methods)} :authority ${JSON.stringify(authorities)}`);
      }
    }
  } finally {
    connection.destroy();
  }
  if (escaped !== undefined) {
    const err = escaped;
    escaped = undefined;
    throw new Error(`an error escaped the server: ${err instanceof Error ? (err.stack ?? err.message) : inspect(err)}`);
  }
  if (++checks % 25 === 0) {
    const echoed = await within(tunnel.roundTrip('alive'), 'round trip through a good tunnel');
    if (echoed !== 'alive') throw new Error(`a good tunnel echoed ${JSON.stringify(echoed)}`);
  }
}

t.test('hostile CONNECT header sets: an answer, a reset or a closed connection, and the server keeps serving', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode, encode, check });
  t.comment(`connect-headers: ${JSON.stringify(report)}`);
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; server: ${JSON.stringify(tunnel.server.stats())}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
  t.ok(report.generated > 0, 'and new inputs generated');
  t.equal(await tunnel.roundTrip('last'), 'last', 'a good tunnel works at the end');
});
