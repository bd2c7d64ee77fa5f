import t from 'tap';
import fc from 'fast-check';
import { Ejections, Outstanding, pickP2C, pickWeighted, RetryBudget } from './select.ts';

t.test('weighted choice follows the cumulative weights; weight 0 is never chosen', async (t) => {
  const bs = [{ n: 'a', weight: 90 }, { n: 'z', weight: 0 }, { n: 'b', weight: 10 }];
  t.equal(pickWeighted(bs, 0)?.n, 'a');
  t.equal(pickWeighted(bs, 0.8999)?.n, 'a');
  t.equal(pickWeighted(bs, 0.9)?.n, 'b');
  t.equal(pickWeighted(bs, 0.99999999)?.n, 'b');
  t.equal(pickWeighted([{ weight: 0 }], 0.5), undefined, 'all weights 0: nothing (500)');
  t.equal(pickWeighted([], 0.5), undefined);
});

t.test('property: over a uniform grid of r, each backend gets its weight share exactly', async () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 6 }), (weights) => {
      const total = weights.reduce((a, b) => a + b, 0);
      const bs = weights.map((weight, i) => ({ i, weight }));
      if (total === 0) return pickWeighted(bs, 0.3) === undefined;
      const got = new Array<number>(weights.length).fill(0);
      const steps = total * 10;
      // Cell midpoints: a boundary itself is at the mercy of floating-point rounding.
      for (let s = 0; s < steps; s++) {
        const i = (pickWeighted(bs, (s + 0.5) / steps) as { i: number }).i;
        got[i] = (got[i] ?? 0) + 1;
      }
      return got.every((g, i) => g === (weights[i] as number) * 10);
    }),
  );
});

t.test('power of two choices takes the less loaded of two distinct candidates', async (t) => {
  const load: Record<string, number> = { a: 5, b: 1, c: 3 };
  const seq = (...xs: number[]) => () => xs.shift() ?? 0;
  t.equal(pickP2C(['a', 'b', 'c'], (c) => load[c] ?? 0, seq(0, 0)), 'b', 'a vs b → b');
  t.equal(pickP2C(['a', 'b', 'c'], (c) => load[c] ?? 0, seq(0, 0.99)), 'c', 'a vs c → c');
  t.equal(pickP2C(['only'], () => 0, Math.random), 'only');
  t.equal(pickP2C([], () => 0, Math.random), undefined);
  fc.assert(
    fc.property(fc.array(fc.nat(10), { minLength: 2, maxLength: 8 }), fc.double({ min: 0, max: 0.9999, noNaN: true }), fc.double({ min: 0, max: 0.9999, noNaN: true }), (loads, r1, r2) => {
      const idx = loads.map((_, i) => i);
      const rs = [r1, r2];
      const chosen = pickP2C(idx, (i) => loads[i] as number, () => rs.shift() ?? 0) as number;
      // Never the single most loaded endpoint when it is strictly the worst.
      const max = Math.max(...loads);
      return !(loads.filter((l) => l === max).length === 1 && loads[chosen] === max);
    }),
  );
});

t.test('outstanding counts go up and down once per request', async (t) => {
  const o = new Outstanding();
  const end1 = o.begin('x');
  const end2 = o.begin('x');
  t.equal(o.get('x'), 2);
  end1();
  end1();
  t.equal(o.get('x'), 1, 'ending twice counts once');
  end2();
  t.equal(o.get('x'), 0);
});

t.test('the retry budget allows a ratio of recent requests plus a floor, then refuses', async (t) => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 1000 });
  for (let i = 0; i < 100; i++) b.request(0);
  let allowed = 0;
  for (let i = 0; i < 100; i++) if (b.tryRetry(0)) allowed++;
  t.equal(allowed, 21, '20% of 100 requests + 1 per second');
  t.notOk(b.tryRetry(500), 'still spent within the window');
  t.ok(b.tryRetry(1001), 'the window moved on: the floor is available again');
});

t.test('ejections: 3 failed connects in a row eject for 10 s, doubling per ejection in a row; a success clears it', async (t) => {
  const e = new Ejections();
  t.notOk(e.failure('a', 0));
  t.notOk(e.failure('a', 1));
  t.ok(e.failure('a', 2), 'the third failure in a row ejects');
  t.ok(e.ejected('a', 10_001));
  t.notOk(e.ejected('a', 10_002), 'for 10 s');
  t.notOk(e.failure('a', 5000), 'failures while ejected do not count');
  t.ok(e.failure('a', 10_002), 'back in, one more failure ejects it again');
  t.ok(e.ejected('a', 30_001) && !e.ejected('a', 30_002), 'for twice as long');
  e.success('a');
  t.notOk(e.ejected('a', 10_003), 'a success clears it');
  t.notOk(e.failure('a', 40_000), 'and the count starts over');
  const all = ['a', 'b'];
  for (const x of all) for (let i = 0; i < 3; i++) e.failure(x, 50_000);
  t.same(e.usable(all, (x) => x, 50_001), all, 'every endpoint ejected: all of them are usable');
  e.success('b');
  t.same(e.usable(all, (x) => x, 50_001), ['b']);
  const capped = new Ejections({ threshold: 1, baseMs: 100_000, maxMs: 300_000 });
  let now = 0;
  for (let i = 0; i < 5; i++) {
    capped.failure('c', now);
    now += 400_000;
  }
  capped.failure('c', now);
  t.ok(capped.ejected('c', now + 299_999) && !capped.ejected('c', now + 300_000), 'the doubling stops at maxMs');
});
