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
// Each agent does what a real one does (agent/sync/): one long-lived connection for sync, a new
// connection per certificate request, and a rotated token every few rounds, whose first use needs
// a review. The negative control runs the same flood against a server without the limits: the
// agents' reviews queue behind the flood's and their p99 goes well over 1 s (and without that,
// the first test would prove nothing).
//
//   node_modules/.bin/tap controller/server/agent-server.flood.test.ts   (figures in the comments)
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { AgentAuthenticator } from './agent-auth.ts';
import type { TokenReviewResult, TokenReviewer } from './agent-auth.ts';
import type { FloodReport } from './flood-client.ts';
import { ReviewGate } from './review-gate.ts';
import { SourceLimiter } from './source-limiter.ts';
import { agentReview, csrPem, fakeJwt, startTestServer } from './test-server.ts';
import type { TestServer } from './test-server.ts';

const FLOOD_SOURCE = '127.0.0.2';
const FLOOD = { connections: 24, streams: 16 };
const AGENTS = 4;
const ROUNDS = 10;
const ROTATE_EVERY = 5;
const PACE_MS = 100;
// An answer later than this counts as this late: the control must end, and 1 s is the bar.
const GIVE_UP_MS = 2_500;
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

interface Figures {
  samples: number;
  p50: number;
  p99: number;
  max: number;
  failures: number;
  reviews: { legit: number; bogus: number };
  floodSeconds: number;
  flood: FloodReport;
}

const here = fileURLToPath(new URL('.', import.meta.url));

async function startFlood(t: Test, server: TestServer, dir: string): Promise<() => Promise<FloodReport>> {
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, server.ca);
  const child = spawn(process.execPath, [join(here, 'flood-client.ts'), JSON.stringify({ url: server.url, caFile, localAddress: FLOOD_SOURCE, ...FLOOD })], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.value !== 'started') throw new Error(`the flood client did not start: ${String(first.value)}`);
  return async () => {
    child.kill('SIGTERM');
    const line = await it.next();
    await once(child, 'exit');
    return JSON.parse(String(line.value)) as FloodReport;
  };
}

async function timed(fn: () => Promise<boolean>): Promise<{ ms: number; ok: boolean }> {
  const started = performance.now();
  const ok = await Promise.race([fn().catch(() => false), sleep(GIVE_UP_MS, false)]);
  return { ms: Math.min(GIVE_UP_MS, performance.now() - started), ok };
}

/** One agent: sync on a long-lived connection, sign on a new connection each time, rotating its token. */
async function legitAgent(server: TestServer, api: SlowApiServer, index: number): Promise<{ ms: number; ok: boolean }[]> {
  const node = `node-${index}`;
  const source = `127.0.0.${10 + index}`;
  const csr = await csrPem();
  let token = api.issue(node);
  const syncConn = await server.agent(token, source);
  const samples: { ms: number; ok: boolean }[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0 && round % ROTATE_EVERY === 0) {
        token = api.issue(node);
        syncConn.token = token;
      }
      samples.push(
        await timed(async () => {
          const s = syncConn.sync({ type: 'hello', node, agentVersion: 'flood-test' });
          try {
            return (await s.next(GIVE_UP_MS)).type === 'snapshot';
          } finally {
            s.close();
          }
        }),
      );
      samples.push(
        await timed(async () => {
          const a = await server.agent(token, source);
          try {
            return (await a.sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: csr })).status === 200;
          } finally {
            a.close();
          }
        }),
      );
      await sleep(PACE_MS);
    }
  } finally {
    syncConn.close();
  }
  return samples;
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

  const stopFlood = await startFlood(t, server, dir);
  const floodStarted = performance.now();
  await sleep(300); // let the flood fill whatever it can fill
  const samples = (await Promise.all(Array.from({ length: AGENTS }, (_, i) => legitAgent(server, api, i)))).flat();
  const flood = await stopFlood();
  const floodSeconds = (performance.now() - floodStarted) / 1000;

  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const pct = (p: number): number => Math.round(ms[Math.min(ms.length - 1, Math.ceil(p * ms.length) - 1)] ?? NaN);
  const figures: Figures = {
    samples: ms.length,
    p50: pct(0.5),
    p99: pct(0.99),
    max: Math.round(ms[ms.length - 1] ?? NaN),
    failures: samples.filter((s) => !s.ok).length,
    reviews: { ...api.reviews },
    floodSeconds: Math.round(floodSeconds * 10) / 10,
    flood,
  };
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
