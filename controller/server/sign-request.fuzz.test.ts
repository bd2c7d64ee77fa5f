// Fuzzing the certificate request body where hostile bytes enter the controller's CA path:
// POST /weft.v1/sign over real TLS and HTTP/2 to the real server (readBody, parseSignRequest in
// api/agent-sync.ts, the pod-on-node rule, then CSR parsing in controller/ca/). Runs through
// tests/helpers/fuzz.ts (WEFT_FUZZ_SECONDS); seeds and past failures are in
// testdata/corpus/sign-body/.
//
// An input is the request body. Generated bodies are mostly requests for an identity the agent
// may have (shop/cart on its node), so that they get past the JSON and authorization checks into
// the CSR parser, with a CSR that is valid, cut, or has bytes flipped in its PEM or DER.
// The property, per input: an answer within a deadline that is 200 or a 4xx refusal with an
// ErrorBody, never a 5xx; and a valid request right after still gets its certificate.
import t from 'tap';
import fc from 'fast-check';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFuzz } from '../../tests/helpers/fuzz.ts';
import { AgentAuthenticator } from './agent-auth.ts';
import { agentReview, csrPem, startTestServer } from './test-server.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'sign-body');
const DEADLINE_MS = 3_000;
const MAX_BODY = 8 * 1024;

const authenticator = new AgentAuthenticator({ reviewer: { review: async (token) => (token === 'agent-token' ? agentReview('node-1') : { authenticated: false }) } });
const server = await startTestServer({ authenticator, nodes: ['node-1'], server: { maxSignBodyBytes: MAX_BODY } });
t.teardown(() => server.close());
const agent = await server.agent('agent-token');
const validCsr = await csrPem();
const valid = JSON.stringify({ namespace: 'shop', serviceAccount: 'cart', csrPem: validCsr });
let checks = 0;

async function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${DEADLINE_MS} ms`)), DEADLINE_MS)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function check(body: Buffer): Promise<void> {
  const reply = await within(agent.sign(body), 'answer');
  if (reply.status >= 500) throw new Error(`the controller answered ${reply.status}: ${JSON.stringify(reply.body)}`);
  if (reply.status !== 200 && !(typeof reply.body === 'object' && reply.body !== null && 'error' in reply.body)) throw new Error(`${reply.status} without an ErrorBody`);
  // Every few inputs (a signature costs a few ms): the CA still signs a valid request.
  if (++checks % 8 === 0) {
    const ok = await within(agent.sign(valid), 'answer to a valid request');
    if (ok.status !== 200) throw new Error(`a valid request got ${ok.status} after a hostile one`);
  }
}

// A CSR with damage: cut, bytes flipped in the base64 text, or in the DER under it.
const pemBody = validCsr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
const der = Buffer.from(pemBody, 'base64');
const pem = (d: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${d.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
const damagedCsr = fc.oneof(
  fc.constant(validCsr),
  fc.nat(validCsr.length).map((n) => validCsr.slice(0, n)),
  fc.array(fc.tuple(fc.nat(der.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
    const d = Buffer.from(der);
    for (const [i, b] of flips) d[i] = b;
    return pem(d);
  }),
  fc.tuple(fc.nat(der.length), fc.uint8Array({ maxLength: 64 })).map(([cut, extra]) => pem(Buffer.concat([der.subarray(0, cut), Buffer.from(extra)]))),
  fc.constantFrom('', pem(Buffer.alloc(0)), validCsr + validCsr, validCsr.replace('CERTIFICATE REQUEST', 'CERTIFICATE'), pem(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]))),
  fc.string({ unit: 'binary', maxLength: 300 }),
);
const name = fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.string({ maxLength: 70 }) });
const request = fc
  .record({
    namespace: fc.oneof({ weight: 6, arbitrary: fc.constant('shop') }, { weight: 1, arbitrary: fc.oneof(name, fc.integer(), fc.constant(null)) }),
    serviceAccount: fc.oneof({ weight: 6, arbitrary: fc.constant('cart') }, { weight: 1, arbitrary: fc.oneof(name, fc.constant(['cart'])) }),
    csrPem: fc.oneof({ weight: 8, arbitrary: damagedCsr }, { weight: 1, arbitrary: fc.anything() }),
  }, { requiredKeys: [] })
  .map((r) => Buffer.from(JSON.stringify(r), 'utf8'));
const arbitrary = fc.oneof(
  { weight: 8, arbitrary: request },
  { weight: 1, arbitrary: fc.json().map((j) => Buffer.from(j, 'utf8')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: MAX_BODY + 512 }).map((b) => Buffer.from(b)) },
);

t.test('hostile certificate requests get a 4xx at worst, and the CA keeps signing', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode: (b) => b, encode: (b) => b, check });
  t.comment(`sign-body: ${JSON.stringify(report)}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
  t.ok(report.generated > 0, 'and new inputs generated');
});
