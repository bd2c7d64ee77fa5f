import t from 'tap';
import { jwtExpiry } from './jwt-expiry.ts';
import { TokenCache, tokenKey } from './token-cache.ts';

const jwt = (payload: unknown) => `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

t.test('jwtExpiry reads exp and nothing else, and never throws', async (t) => {
  t.equal(jwtExpiry(jwt({ exp: 1_700_000_000 })), 1_700_000_000_000);
  for (const bad of ['', 'opaque-token', 'a.b', 'a.!!!.c', jwt('string'), jwt(null), jwt({ exp: 'soon' }), jwt({ exp: -1 }), jwt({}), `x.${'A'.repeat(20_000)}.y`]) {
    t.equal(jwtExpiry(bad), undefined, JSON.stringify(bad.slice(0, 30)));
  }
});

t.test('accepted tokens live until their exp, capped; refusals briefly; keys are digests', async (t) => {
  let now = 1_000_000_000_000;
  const cache = new TokenCache<string, string>({ maxTtlMs: 300_000, negativeTtlMs: 5_000, maxEntries: 10, now: () => now });
  const soon = jwt({ exp: now / 1000 + 60 });
  const late = jwt({ exp: now / 1000 + 86_400 });
  const opaque = 'not-a-jwt';
  for (const tok of [soon, late, opaque]) cache.accept(tokenKey(tok), tok, 'node-1');
  t.not(tokenKey(soon), soon);
  now += 59_000;
  t.equal(cache.accepted(tokenKey(soon)), 'node-1', 'before its exp');
  now += 2_000;
  t.equal(cache.accepted(tokenKey(soon)), undefined, 'not after its exp');
  t.equal(cache.accepted(tokenKey(late)), 'node-1');
  now += 300_000;
  t.equal(cache.accepted(tokenKey(late)), undefined, 'a far exp is capped');
  t.equal(cache.accepted(tokenKey(opaque)), undefined, 'no exp: the cap');

  const expired = jwt({ exp: now / 1000 - 10 });
  cache.accept(tokenKey(expired), expired, 'node-1');
  t.equal(cache.accepted(tokenKey(expired)), undefined, 'an exp already past is not cached');

  cache.refuse(tokenKey('bad'), 'no');
  t.equal(cache.refused(tokenKey('bad')), 'no');
  now += 5_001;
  t.equal(cache.refused(tokenKey('bad')), undefined);
});

t.test('a flood of refusals never evicts accepted tokens', async (t) => {
  const cache = new TokenCache<string, string>({ maxTtlMs: 60_000, negativeTtlMs: 5_000, maxEntries: 4, now: () => 0 });
  cache.accept('agent', 'x', 'node-1');
  for (let i = 0; i < 1_000; i++) cache.refuse(`bogus-${i}`, 'no');
  t.equal(cache.accepted('agent'), 'node-1');
  t.strictSame(cache.size, { accepted: 1, refused: 4 });
});
