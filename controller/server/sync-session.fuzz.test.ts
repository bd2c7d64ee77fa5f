// Fuzzing the agent-sync line protocol where hostile bytes enter the controller: the body of a
// real sync stream (line-splitter.ts, parseAgentMessage in api/agent-sync.ts, sync-session.ts),
// over real TLS and HTTP/2 to the real server. Runs through tests/helpers/fuzz.ts (its header
// says how, and how long: WEFT_FUZZ_SECONDS); seeds and past failures are in
// testdata/corpus/sync-lines/.
//
// An input is one Buffer. Its first byte chooses where the rest goes (bit 0: before the hello,
// i.e. as the stream's first line, or after a valid hello) and how it is cut into writes (the
// other bits), so that lines split across chunks, and UTF-8 split inside a character, are tried.
// The property, per input:
//   - the controller answers: a status before the hello (never 500), trailers after it (never
//     INTERNAL), or it keeps the stream until the agent leaves — within a deadline, never a hang;
//   - the hostile stream's session is gone afterwards (no leak);
//   - another agent's stream, open all along, still gets the next change and can ACK it.
// A crash of the controller is a crash of this process, and fails the test.
import t from 'tap';
import fc from 'fast-check';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { runFuzz } from '../../tests/helpers/fuzz.ts';
import type { Resource } from '../../api/agent-sync.ts';
import { AgentAuthenticator } from './agent-auth.ts';
import { agentReview, startTestServer } from './test-server.ts';
import type { SyncStream } from './test-agent.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'sync-lines');
// Small, so that generated inputs reach "line too long" without megabytes per run.
const MAX_LINE_BYTES = 2_048;
const DEADLINE_MS = 3_000;

const authenticator = new AgentAuthenticator({
  reviewer: { review: async (token) => (token === 'hostile-token' ? agentReview('node-1') : token === 'witness-token' ? agentReview('node-2') : { authenticated: false }) },
});
const server = await startTestServer({ authenticator, nodes: ['node-1', 'node-2'], server: { maxLineBytes: MAX_LINE_BYTES, helloTimeoutMs: 1_000 } });
t.teardown(() => server.close());

const hostile = await server.agent('hostile-token');
const witnessAgent = await server.agent('witness-token');
const witness = witnessAgent.sync({ type: 'hello', node: 'node-2', agentVersion: 'witness' });
const first = await witness.next();
witness.send({ type: 'ack', epoch: first.epoch, revision: first.revision });
let changes = 0;

function decode(file: Buffer): Buffer {
  return file;
}

/** Splits `body` into writes of a size taken from the mode byte: 1, 7, 13, ... bytes, or all at once. */
function chunks(mode: number, body: Buffer): Buffer[] {
  const size = mode >> 1 === 0 ? body.length : 1 + ((mode >> 1) - 1) * 6;
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += Math.max(1, size)) out.push(body.subarray(i, i + Math.max(1, size)));
  return out;
}

async function within<T>(p: Promise<T>, what: string): Promise<T> {
  const timeout = sleep(DEADLINE_MS).then(() => {
    throw new Error(`no ${what} within ${DEADLINE_MS} ms`);
  });
  return Promise.race([p, timeout]);
}

async function check(input: Buffer): Promise<void> {
  const mode = input[0] ?? 0;
  const body = input.subarray(1);
  const beforeHello = (mode & 1) === 1;
  const s: SyncStream = hostile.sync(beforeHello ? null : { type: 'hello', node: 'node-1', agentVersion: 'fuzz' });
  if (!beforeHello) {
    const status = await within(s.status, 'answer to a valid hello');
    if (status !== 200) throw new Error(`a valid hello got ${status}`);
  }
  for (const c of chunks(mode, body)) s.stream.write(c);
  s.stream.end();
  const status = await within(s.status.catch(() => 0), 'answer');
  if (status >= 500) throw new Error(`the controller answered ${status}: ${JSON.stringify(await s.body().catch(() => null))}`);
  if (beforeHello && ![0, 200, 400, 403].includes(status)) throw new Error(`unexpected status ${status} before the hello`);
  const trailers = await within(s.trailers, 'end of the stream');
  const code = trailers['weft-error-code'];
  if (code === 'INTERNAL') throw new Error(`INTERNAL: ${String(trailers['weft-error-message'])}`);
  await within(s.closed, 'close of the stream');

  // The other agent's stream is unharmed: the next change reaches it and its ACK is taken.
  const key = `fuzz/w-${++changes}`;
  const w: Resource = {
    kind: 'Workload',
    value: { key, uid: key, namespace: 'fuzz', name: `w-${changes}`, node: 'node-2', ips: [], serviceAccount: 'sa', identity: 'spiffe://cluster.local/ns/fuzz/sa/sa', meshed: false, labels: {}, namedPorts: {} },
  };
  server.store.upsert(w);
  const delta = await within(witness.next(DEADLINE_MS), 'delta on the witness stream');
  if (delta.type !== 'delta' || !delta.upserts.some((r) => r.value.key === key)) throw new Error(`the witness got ${JSON.stringify(delta).slice(0, 200)}`);
  witness.send({ type: 'ack', epoch: delta.epoch, revision: delta.revision });
  server.store.remove({ kind: 'Workload', key });
  const removed = await within(witness.next(DEADLINE_MS), 'second delta on the witness stream');
  witness.send({ type: 'ack', epoch: removed.epoch, revision: removed.revision });

  // Nothing of the hostile stream is left behind: only the witness streams.
  for (let i = 0; server.syncStreams() !== 1; i++) {
    if (i > 100) throw new Error(`${server.syncStreams()} sync streams open after the hostile one closed`);
    await sleep(10);
  }
}

// Lines an agent could send, right or wrong in every field, plus plain garbage.
const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', 'node-1', 'node-2', '__proto__', 'constructor', '\u0000', 'x'.repeat(300)));
const anyNumber = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, 1, -1, 2 ** 53, Number.MAX_VALUE));
const anyValue = fc.oneof(anyString, anyNumber, fc.boolean(), fc.constant(null), fc.array(anyString, { maxLength: 3 }), fc.dictionary(anyString, anyString, { maxKeys: 3 }));
const message = fc
  .record(
    {
      type: fc.oneof(fc.constantFrom('hello', 'ack', 'nack', 'snapshot', 'delta', 'HELLO'), anyValue),
      node: fc.oneof(fc.constantFrom('node-1', 'node-2'), anyValue),
      agentVersion: anyValue,
      epoch: fc.oneof(fc.constant(server.store.epoch), anyValue),
      revision: fc.oneof(fc.nat(5), anyValue),
      reason: anyValue,
    },
    { requiredKeys: [] },
  )
  .map((m) => JSON.stringify(m));
// Well-formed messages, so that the states behind a valid hello, ACK and NACK are reached too.
const epoch = fc.oneof({ weight: 4, arbitrary: fc.constant(server.store.epoch) }, { weight: 1, arbitrary: fc.string() });
const revision = fc.oneof(fc.nat(8), fc.nat(100_000));
const wellFormed = fc
  .oneof(
    fc.record({ type: fc.constant('ack'), epoch, revision }),
    fc.record({ type: fc.constant('nack'), epoch, revision, reason: fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 3_000 })) }),
    fc.record({ type: fc.constant('hello'), node: fc.constantFrom('node-1', 'node-2'), agentVersion: fc.string(), epoch, revision }, { requiredKeys: ['type', 'node', 'agentVersion'] }),
  )
  .map((m) => JSON.stringify(m));
const line = fc.oneof(
  { weight: 4, arbitrary: wellFormed },
  { weight: 4, arbitrary: message },
  { weight: 2, arbitrary: fc.json() },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_LINE_BYTES - 2, max: MAX_LINE_BYTES * 3 }).map((n) => `{"type":"nack","reason":"${'r'.repeat(n)}"}`) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\r', '[', '{', '"', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', '{"type":"hello","node":"node-1","agentVersion":"x"}') },
);
const separator = fc.constantFrom('\n', '\r\n', '\n\n', '');
const body = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(line, { maxLength: 8 }), separator).map(([ls, sep]) => Buffer.from(ls.join(sep) + (ls.length ? '\n' : ''), 'utf8')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 * MAX_LINE_BYTES }).map((b) => Buffer.from(b)) },
);
const arbitrary = fc.tuple(fc.integer({ min: 0, max: 255 }), body).map(([mode, b]) => Buffer.concat([Buffer.from([mode]), b]));

t.test('hostile lines on a sync stream end that stream at most, never the controller or another agent', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode, encode: (b) => b, check });
  t.comment(`sync-lines: ${JSON.stringify(report)}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
  t.ok(report.generated > 0, 'and new inputs generated');
});
