// The authenticator's own rules (bearer parsing, the identity checks, caching, the order of the
// limits) with a reviewer that answers from a table and counts calls. The TokenReview client
// against a real API server is proven in controller/controller.playground.test.ts.
import t from 'tap';
import { AgentAuthenticator } from './agent-auth.ts';
import type { TokenReviewResult } from './agent-auth.ts';
import { AgentApiError } from './errors.ts';
import { ReviewGate } from './review-gate.ts';
import { SourceLimiter } from './source-limiter.ts';

function setup(answers: Record<string, TokenReviewResult | Error>, opts: { ttlMs?: number; negativeTtlMs?: number; maxEntries?: number } = {}) {
  let now = 1_000_000;
  const seen: string[] = [];
  const auth = new AgentAuthenticator({
    reviewer: {
      review: async (token) => {
        seen.push(token);
        await new Promise((r) => setTimeout(r, 5));
        const a = answers[token] ?? { authenticated: false };
        if (a instanceof Error) throw a;
        return a;
      },
    },
    now: () => now,
    ...opts,
  });
  return { auth, seen, advance: (ms: number) => (now += ms) };
}

const bound = (node: string, extra: Record<string, string[]> = {}): TokenReviewResult => ({
  authenticated: true,
  user: { username: 'system:serviceaccount:weft-system:weft-agent', extra: { 'authentication.kubernetes.io/node-name': [node], ...extra } },
});

t.test('the node comes from the token binding', async (t) => {
  const { auth } = setup({ a: bound('node-1', { 'authentication.kubernetes.io/pod-name': ['weft-agent-x'] }) });
  t.strictSame(await auth.authenticate('Bearer a'), { node: 'node-1', username: 'system:serviceaccount:weft-system:weft-agent', pod: 'weft-agent-x' });
  t.strictSame((await auth.authenticate('bearer   a ')).node, 'node-1', 'scheme is case-insensitive, spaces tolerated');
});

t.test('refusals carry codes', async (t) => {
  const { auth } = setup({ unbound: { authenticated: true, user: { username: 'system:serviceaccount:weft-system:weft-agent' } }, other: { ...bound('node-1'), user: { ...bound('node-1').user, username: 'system:serviceaccount:x:y' } } });
  await t.rejects(auth.authenticate(undefined), { code: 'UNAUTHENTICATED' });
  await t.rejects(auth.authenticate('Basic dXNlcjpwdw=='), { code: 'UNAUTHENTICATED' });
  await t.rejects(auth.authenticate('Bearer a b'), { code: 'UNAUTHENTICATED' });
  await t.rejects(auth.authenticate(`Bearer ${'x'.repeat(20_000)}`), { code: 'UNAUTHENTICATED', message: /implausibly long/ });
  await t.rejects(auth.authenticate('Bearer nobody'), { code: 'UNAUTHENTICATED' });
  await t.rejects(auth.authenticate('Bearer unbound'), { code: 'FORBIDDEN', message: /not bound to a node/ });
  await t.rejects(auth.authenticate('Bearer other'), { code: 'FORBIDDEN', message: /system:serviceaccount:x:y/ });
  const configured = new AgentAuthenticator({ serviceAccount: { namespace: 'mesh', name: 'agent' }, reviewer: { review: async () => bound('n') } });
  await t.rejects(configured.authenticate('Bearer t'), { code: 'FORBIDDEN', message: /system:serviceaccount:mesh:agent/ }, 'the expected service account is configurable');
});

t.test('reviews are cached by token for a short time, refusals for a shorter one', async (t) => {
  const { auth, seen, advance } = setup({ good: bound('node-1') }, { ttlMs: 30_000, negativeTtlMs: 5_000 });
  await Promise.all([auth.authenticate('Bearer good'), auth.authenticate('Bearer good'), auth.authenticate('Bearer good')]);
  t.equal(seen.length, 1, 'concurrent requests with one token share one review');
  advance(29_000);
  await auth.authenticate('Bearer good');
  t.equal(seen.length, 1, 'still cached');
  advance(2_000);
  await auth.authenticate('Bearer good');
  t.equal(seen.length, 2, 'expired: asked again');

  await t.rejects(auth.authenticate('Bearer bad'));
  await t.rejects(auth.authenticate('Bearer bad'));
  t.equal(seen.length, 3, 'a refusal is cached too');
  advance(6_000);
  await t.rejects(auth.authenticate('Bearer bad'));
  t.equal(seen.length, 4);
});

t.test('an API server that cannot answer is not cached and is not the agent’s fault', async (t) => {
  const answers: Record<string, TokenReviewResult | Error> = { tok: new Error('connect ECONNREFUSED') };
  const { auth, seen } = setup(answers);
  const err = await auth.authenticate('Bearer tok').catch((e: unknown) => e);
  t.ok(err instanceof AgentApiError && err.code === 'NOT_READY' && err.status === 503, 'NOT_READY, 503');
  answers.tok = bound('node-1');
  t.equal((await auth.authenticate('Bearer tok')).node, 'node-1', 'the next attempt asks again');
  t.equal(seen.length, 2);
});

t.test('the cache is bounded', async (t) => {
  const answers: Record<string, TokenReviewResult> = {};
  for (let i = 0; i < 5; i++) answers[`t${i}`] = bound(`node-${i}`);
  const { auth, seen } = setup(answers, { maxEntries: 3 });
  for (let i = 0; i < 5; i++) await auth.authenticate(`Bearer t${i}`);
  await auth.authenticate('Bearer t4');
  t.equal(seen.length, 5, 'the newest are kept');
  await auth.authenticate('Bearer t0');
  t.equal(seen.length, 6, 'the oldest was evicted');
});

t.test('limits apply before any review; known tokens and trusted connections skip them', async (t) => {
  const answers: Record<string, TokenReviewResult> = { agent: bound('node-1'), rotated: bound('node-1') };
  const seen: string[] = [];
  const limited: string[] = [];
  const auth = new AgentAuthenticator({
    reviewer: {
      review: async (token) => {
        seen.push(token);
        return answers[token] ?? { authenticated: false };
      },
    },
    limiter: new SourceLimiter({ reviewBurst: 2, reviewRatePerSecond: 0.001 }),
    gate: new ReviewGate({ concurrency: 1, queue: 1 }),
  });
  auth.onLimited = (reason) => limited.push(reason);
  const pod = { source: '10.0.0.9' };
  t.equal((await auth.authenticate('Bearer agent', pod)).node, 'node-1', 'the first token costs one review');
  await t.rejects(auth.authenticate('Bearer bogus-1', pod), { code: 'UNAUTHENTICATED' });
  const err = await auth.authenticate('Bearer bogus-2', pod).catch((e: unknown) => e);
  t.ok(err instanceof AgentApiError && err.code === 'RATE_LIMITED' && err.status === 429, '429 RATE_LIMITED');
  t.strictSame((err as AgentApiError).headers(), { 'retry-after': String((err as AgentApiError).retryAfterSeconds) });
  t.strictSame(seen, ['agent', 'bogus-1'], 'no review was sent for the limited request');
  t.strictSame(limited, ['source_rate']);
  t.equal((await auth.authenticate('Bearer agent', pod)).node, 'node-1', 'a known token from the same exhausted source still passes');
  t.equal((await auth.authenticate('Bearer rotated', { ...pod, trusted: true })).node, 'node-1', 'a trusted connection may present a new token');
  t.strictSame(seen, ['agent', 'bogus-1', 'rotated']);
});

t.test('an accepted token is trusted until its own exp, never past the cap', async (t) => {
  let now = 1_000_000_000_000;
  const token = `e30.${Buffer.from(JSON.stringify({ exp: now / 1000 + 600 })).toString('base64url')}.sig`;
  let reviews = 0;
  const auth = new AgentAuthenticator({
    reviewer: {
      review: async () => {
        reviews++;
        return bound('node-1');
      },
    },
    ttlMs: 3_600_000,
    now: () => now,
  });
  await auth.authenticate(`Bearer ${token}`);
  now += 599_000;
  await auth.authenticate(`Bearer ${token}`);
  t.equal(reviews, 1, 'cached while the token is valid');
  now += 2_000;
  await auth.authenticate(`Bearer ${token}`);
  t.equal(reviews, 2, 'asked again once it has expired');
});
