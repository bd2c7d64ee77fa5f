import t from 'tap';
import { SourceLimiter, sourceOf } from './source-limiter.ts';

function setup(limits = {}) {
  let now = 0;
  const limiter = new SourceLimiter({ reviewRatePerSecond: 2, reviewBurst: 3, pendingReviewsPerSource: 10, connectionsPerSource: 2, maxConnections: 3, maxSources: 2, ...limits }, () => now);
  return { limiter, advance: (ms: number) => (now += ms) };
}

t.test('a token bucket of reviews per source', async (t) => {
  const { limiter, advance } = setup();
  for (let i = 0; i < 3; i++) t.ok(limiter.admitReview('10.0.0.1').admitted, `burst ${i + 1}`);
  const refused = limiter.admitReview('10.0.0.1');
  t.match(refused, { admitted: false, reason: 'source_rate', retryAfterSeconds: 1 }, 'the bucket is empty');
  t.ok(limiter.admitReview('10.0.0.2').admitted, 'another source has its own bucket');
  advance(499);
  t.notOk(limiter.admitReview('10.0.0.1').admitted, 'refills at 2 per second: not yet');
  advance(1);
  t.ok(limiter.admitReview('10.0.0.1').admitted, 'after half a second, one more');
  advance(60_000);
  for (let i = 0; i < 3; i++) t.ok(limiter.admitReview('10.0.0.1').admitted);
  t.notOk(limiter.admitReview('10.0.0.1').admitted, 'a quiet source saves up no more than the burst');
});

t.test('a cap on reviews waiting per source', async (t) => {
  const { limiter } = setup({ pendingReviewsPerSource: 2, reviewBurst: 100 });
  const a = limiter.admitReview('s');
  const b = limiter.admitReview('s');
  t.match(limiter.admitReview('s'), { admitted: false, reason: 'source_pending' });
  if (!a.admitted || !b.admitted) throw new Error('unreachable');
  a.ticket.release();
  a.ticket.release();
  t.equal(limiter.counts.pendingReviews, 1, 'release counts once');
  t.ok(limiter.admitReview('s').admitted, 'a slot came free');
});

t.test('unauthenticated connections per source and in all; authenticated ones stop counting', async (t) => {
  const { limiter } = setup();
  const a = limiter.admitConnection('s');
  const b = limiter.admitConnection('s');
  t.match(limiter.admitConnection('s'), { admitted: false, reason: 'source_connections' });
  const c = limiter.admitConnection('other');
  t.match(limiter.admitConnection('third'), { admitted: false, reason: 'connections' }, 'the global cap');
  if (!a.admitted || !b.admitted || !c.admitted) throw new Error('unreachable');
  a.ticket.authenticated();
  a.ticket.release();
  t.equal(limiter.counts.unauthenticatedConnections, 2, 'authenticated, then closed: counted off once');
  t.ok(limiter.admitConnection('s').admitted, 'the source may open another');
});

t.test('memory: buckets are an LRU, counters hold only live entries', async (t) => {
  const { limiter } = setup({ maxSources: 2 });
  for (let i = 0; i < 1000; i++) {
    const r = limiter.admitReview(`10.1.${i >> 8}.${i & 255}`);
    if (r.admitted) r.ticket.release();
  }
  t.strictSame(limiter.counts, { sources: 2, pendingReviews: 0, unauthenticatedConnections: 0 });
});

t.test('sources: IPv4-mapped IPv6 is the IPv4 address', async (t) => {
  t.equal(sourceOf('::ffff:10.0.0.1'), '10.0.0.1');
  t.equal(sourceOf('fd00::1'), 'fd00::1');
  t.equal(sourceOf(undefined), 'unknown');
});
