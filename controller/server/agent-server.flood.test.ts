// Issue 11, "Hostile input": a pod floods the agent API with distinct bogus tokens from one
// source, many connections and many streams at once, while legitimate agents sign and sync.
//
// Everything the controller does is real: TLS 1.3, HTTP/2, the server, its limits, the token
// cache, the sign handler and the mesh CA; the flood comes from a separate process
// (flood-client.ts) over real sockets from its own address (127.0.0.2), each agent from another
// (127.0.0.1x). The one fake is the TokenReviewer: this test is about the controller's own
// queueing, so the API server is modelled as a slow in-process FIFO with a fixed number of
// reviews in flight (4 at 40 ms each, ~100 reviews/s) — like a real API server under
// max-requests-inflight, reviews beyond its capacity wait.
//
// Each agent does what a real one does (flood-harness.ts): one long-lived connection for sync, a
// new connection per certificate request, and a rotated token every few rounds, whose first use
// needs a review. The negative control runs the same flood against a server without the limits: the
// agents' reviews queue behind the flood's and their p99 goes well over 1 s (and without that,
// the first test would prove nothing).
//
//   node_modules/.bin/tap controller/server/agent-server.flood.test.ts   (figures in the comments)
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentAuthenticator } from './agent-auth.ts';
import type { TokenReviewResult, TokenReviewer } from './agent-auth.ts';
import type { FloodReport } from './flood-client.ts';
import { latencies, legitAgent, startFlood } from './flood-harness.ts';
import type { Latencies } from './flood-harness.ts';
import { ReviewGate } from './review-gate.ts';
import { SourceLimiter } from './source-limiter.ts';
import { agentReview, csrPem, fakeJwt, startTestServer } from './test-server.ts';

const FLOOD = { localAddress: '127.0.0.2', connections: 24, streams: 16 };
const AGENTS = 4;
const WORK = { rounds: 10, rotateEvery: 5, paceMs: 100, giveUpMs: 2_500 };
const LIMITS = { reviewRatePerSecond: 5, reviewBurst: 10, pendingReviewsPerSource: 4, connectionsPerSource: 8 };
const GATE = { concurrency: 8, queue: 32, maxWaitMs: 1_000 };

/** The API server, as far as reviews go: `capacity` at once, each taking `latencyMs`, the rest wait in line. */
class SlowApiServer implements TokenReviewer {
  readonly #legit = new Map<string, string>();
  readonly #waiting: (() => void)[] = [];
  #busy = 0;
  readonly capacity: number;
  readonly latencyMs: number;
  reviews = { legit: 0, bogus: 0 };

  constructor(capacity = 4, latencyMs = 40) {
    this.capacity = capacity;
    this.latencyMs = latencyMs;
  }

  issue(node: string): string {
    const token = fakeJwt(`system:serviceaccount:weft-system:weft-agent@${node}`);
    this.#legit.set(token, node);
    return token;
  }

  async review(token: string): Promise<TokenReviewResult> {
    const node = this.#legit.get(token);
    if (node) this.reviews.legit++;
    else this.reviews.bogus++;
    if (this.#busy >= this.capacity) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#busy++;
    try {
      await sleep(this.latencyMs);
      return node ? agentReview(node) : { authenticated: false, error: 'invalid bearer token' };
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#busy--;
    }
  }
}

interface Figures extends Latencies {
  reviews: { legit: number; bogus: number };
  floodSeconds: number;
  flood: FloodReport;
}

async function run(t: Test, limited: boolean): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-flood-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const api = new SlowApiServer();
  const limiter = limited ? new SourceLimiter(LIMITS) : undefined;
  const authenticator = new AgentAuthenticator({ reviewer: api, ...(limited ? { limiter, gate: new ReviewGate(GATE) } : {}) });
  const server = await startTestServer({ authenticator, ...(limiter ? { limiter } : {}), nodes: Array.from({ length: AGENTS }, (_, i) => `node-${i}`) });
  t.teardown(() => server.close());
  authenticator.onLimited = (reason) => server.metrics.agentApiLimited.inc({ reason });
  const at = { url: server.url, ca: server.ca, servername: 'weft-controller' };

  const stopFlood = await startFlood(t, at, { ...FLOOD, dir });
  const floodStarted = performance.now();
  await sleep(300); // let the flood fill whatever it can fill
  const csr = await csrPem();
  const samples = await Promise.all(
    Array.from({ length: AGENTS }, (_, i) =>
      legitAgent(at, { node: `node-${i}`, source: `127.0.0.${10 + i}`, nextToken: () => api.issue(`node-${i}`), csrPem: csr, identity: { namespace: 'shop', serviceAccount: 'cart' }, ...WORK }),
    ),
  );
  const flood = await stopFlood();
  const floodSeconds = Math.round((performance.now() - floodStarted) / 100) / 10;
  const figures: Figures = { ...latencies(samples.flat()), reviews: { ...api.reviews }, floodSeconds, flood };
  t.comment(`${limited ? 'with limits' : 'without limits (control)'}: ${JSON.stringify(figures)}`);
  return figures;
}

t.test('a flood of bogus tokens from one source costs capped reviews; agents keep p99 < 1 s', async (t) => {
  const f = await run(t, true);
  t.equal(f.failures, 0, 'every sync and certificate request of the agents succeeded');
  t.ok(f.p99 < 1_000, `agents' sign/sync p99 ${f.p99} ms < 1 s`);
  const cap = LIMITS.reviewBurst + Math.ceil(LIMITS.reviewRatePerSecond * f.floodSeconds);
  t.ok(f.reviews.bogus <= cap, `the flood cost ${f.reviews.bogus} reviews, at most burst + rate × ${f.floodSeconds} s = ${cap}`);
  t.ok(f.flood.requests > 20 * cap, `the flood did send far more (${f.flood.requests} requests)`);
  t.ok((f.flood.statuses['429'] ?? 0) > 0 && f.flood.retryAfterSeen > 0, '429 with retry-after');
  t.ok(f.flood.connectionsRefused > 0, `connections over the per-source cap were closed (${f.flood.connectionsRefused})`);
});

t.test('negative control: without the limits the same flood pushes the agents over 1 s', async (t) => {
  const f = await run(t, false);
  t.ok(f.p99 >= 1_000, `agents' sign/sync p99 ${f.p99} ms ≥ 1 s without the limits`);
  t.ok(f.reviews.bogus > 100, `and the flood cost ${f.reviews.bogus} reviews`);
});
