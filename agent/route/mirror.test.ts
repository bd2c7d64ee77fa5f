// The mirror's bookkeeping without sockets: shares, the per-agent limit on copies in flight, the
// body bound, and what each outcome counts.
import t from 'tap';
import type { RouteMirror } from '../../api/route.ts';
import { registry } from '../metrics.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { BodyCopy, Mirrors } from './mirror.ts';
import { DEFAULT_MIRROR_LIMITS, type MirrorLimits } from './mirror-limits.ts';
import { oneRouteState } from './test-fixtures.ts';

const { store } = oneRouteState([8080, 8081], 'r');
const deps = (random: () => number, routeMirror?: MirrorLimits) =>
  new Mirrors(
    {
      p: { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }), connectTimeoutMs: 100, idleTimeoutMs: 1000, ...(routeMirror ? { routeMirror } : {}) },
      openTunnel: () => Promise.reject(new Error('no tunnel')),
    },
    random,
  );
const MAX_IN_FLIGHT = DEFAULT_MIRROR_LIMITS.maxInFlight;
const BODY_MAX = DEFAULT_MIRROR_LIMITS.maxBodyBytes;
const mirror = (numerator: number, denominator: number, service = 'a/web'): RouteMirror => ({ service, port: 80, numerator, denominator });
const labels = { destination_service: 'a/web', route: 'HTTPRoute/a/r' };

async function counted(result: string, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('weft_route_mirror_requests_total')?.get();
  return m?.values.filter((v) => v.labels.result === result && v.labels.reason === reason).reduce((a, v) => a + v.value, 0) ?? 0;
}

t.test('each mirror takes its own share of the requests', async (t) => {
  let x = 0;
  // 0.00, 0.01, … 0.99 in turn: exactly the share asked of 100 draws per mirror.
  const m = deps(() => (x++ % 100) / 100);
  let quarter = 0;
  let third = 0;
  for (let i = 0; i < 100; i++) {
    const chosen = m.choose([mirror(25, 100)], undefined);
    if (chosen.length === 1) quarter++;
  }
  for (let i = 0; i < 100; i++) if (m.choose([mirror(1, 3)]).length === 1) third++;
  t.equal(quarter, 25);
  t.equal(third, 34, '1/3 of 100 draws (0.00 … 0.33)');
  t.equal(deps(() => 0.999).choose([mirror(1, 1)]).length, 1, 'every request: drawn or not, always');
  t.equal(deps(() => 0).choose([mirror(0, 100)]).length, 0, '0 %: never');
  t.same(
    deps(() => 0).choose([mirror(1, 1, 'a/x')], [mirror(1, 1, 'a/y')]).map((c) => c.service),
    ['a/x', 'a/y'],
    "a rule's and a backend's mirrors both",
  );
});

t.test('at most maxInFlight (by default 128) copies at once; beyond, dropped and counted; a released slot is free again', async (t) => {
  const m = deps(() => 0.5);
  const before = await counted('dropped', 'limit');
  const slots = [];
  for (let i = 0; i < MAX_IN_FLIGHT; i++) slots.push(m.begin(labels, mirror(1, 1)));
  t.ok(slots.every((s) => s !== undefined), `${MAX_IN_FLIGHT} copies start`);
  t.equal(m.inFlight, MAX_IN_FLIGHT);
  t.equal(m.begin(labels, mirror(1, 1)), undefined, 'one more does not');
  t.equal((await counted('dropped', 'limit')) - before, 1, 'and is counted as dropped');
  const sentBefore = await counted('sent', '');
  slots[0]?.release({ result: 'sent' });
  slots[0]?.release({ result: 'sent' });
  t.equal((await counted('sent', '')) - sentBefore, 1, 'released once, counted once');
  t.equal(m.inFlight, MAX_IN_FLIGHT - 1);
  t.ok(m.begin(labels, mirror(1, 1)), 'the freed slot takes the next copy');
  for (const s of slots) s?.release({ result: 'failed', reason: 'reset' });
});

t.test('a mirror Service with no ready endpoint fails at once, without a slot', async (t) => {
  const m = deps(() => 0.5);
  const before = await counted('failed', 'no_endpoint');
  t.equal(m.begin(labels, mirror(1, 1, 'a/none')), undefined);
  t.equal((await counted('failed', 'no_endpoint')) - before, 1);
  t.equal(m.inFlight, 0);
});

t.test('a body is copied up to maxBodyBytes (by default 64 KiB); past it, not at all', async (t) => {
  const small = new BodyCopy();
  small.add(Buffer.from('a'.repeat(BODY_MAX - 1)));
  small.add(Buffer.from('b'));
  t.equal(small.over, false);
  t.equal(small.body.length, BODY_MAX);
  small.add(Buffer.from('c'));
  t.equal(small.over, true, 'one byte more is over');
  t.equal(small.body.length, 0, 'and nothing is kept');
});

t.test("the agent's configured bounds replace the defaults", async (t) => {
  const m = deps(() => 0.5, { maxInFlight: 2, maxBodyBytes: 10, timeoutMs: 50 });
  t.same(m.limits, { maxInFlight: 2, maxBodyBytes: 10, timeoutMs: 50 });
  const before = await counted('dropped', 'limit');
  const slots = [m.begin(labels, mirror(1, 1)), m.begin(labels, mirror(1, 1))];
  t.ok(slots.every((s) => s !== undefined), 'two copies start');
  t.equal(m.begin(labels, mirror(1, 1)), undefined, 'a third does not');
  t.equal((await counted('dropped', 'limit')) - before, 1, 'and is counted as dropped');
  for (const s of slots) s?.release({ result: 'sent' });

  // collect() copies a streamed body up to the configured size, and drops every copy past it.
  const { EventEmitter } = await import('node:events');
  const sent: Buffer[] = [];
  const fits = new EventEmitter();
  m.collect(labels, [mirror(1, 1)], fits, (b) => sent.push(b));
  fits.emit('data', Buffer.from('0123456789'));
  fits.emit('end');
  t.same(sent.map((b) => b.toString()), ['0123456789'], 'a body of exactly maxBodyBytes is copied');
  const tooLarge = await counted('dropped', 'body_too_large');
  const over = new EventEmitter();
  m.collect(labels, [mirror(1, 1)], over, (b) => sent.push(b));
  over.emit('data', Buffer.from('0123456789a'));
  over.emit('end');
  t.equal(sent.length, 1, 'one byte more is not copied');
  t.equal((await counted('dropped', 'body_too_large')) - tooLarge, 1, 'but dropped and counted');
  t.same(deps(() => 0.5).limits, DEFAULT_MIRROR_LIMITS, 'without configuration: 64 KiB, 128, 10 s');
});
