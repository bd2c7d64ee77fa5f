// The admin endpoint's POST /release_memory: the levels after a full collection and trim, which
// tests/tracing.test.ts compares (retained memory, not garbage V8 has yet to collect).
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { startEndpoints } from './admin.ts';
import { type MemoryLevels, releaseMemory } from './native/trim.ts';

t.test('POST /release_memory collects now and answers the levels; GET is refused', async (t) => {
  const ep = await startEndpoints({ dump: {}, notReady: () => undefined, releaseMemory }, { metrics: 0, health: 0, admin: 0 }, '127.0.0.1');
  t.teardown(() => {
    for (const s of [ep.metrics, ep.health, ep.admin]) s.close();
  });
  const url = `http://127.0.0.1:${(ep.admin.address() as AddressInfo).port}/release_memory`;
  // ~40 MB of objects that reach the old generation, garbage once the function returns: only a
  // full collection frees it.
  const burst = async (): Promise<number> => {
    const held: object[][] = [];
    while (held.length < 400) {
      held.push(Array.from({ length: 1000 }, (_, i) => ({ i, s: 'x'.repeat(16) + i })));
      await new Promise((r) => setImmediate(r));
    }
    return held.length;
  };
  await burst();
  t.equal((await fetch(url)).status, 405, 'a GET does not collect');
  const r = await fetch(url, { method: 'POST' });
  t.equal(r.status, 200);
  const body = (await r.json()) as { before: MemoryLevels; after: MemoryLevels; ms: number };
  const mb = (x: number) => (x / 2 ** 20).toFixed(1);
  t.ok(body.before.heapUsed - body.after.heapUsed > 20 * 2 ** 20, `the garbage was collected: heap ${mb(body.before.heapUsed)} -> ${mb(body.after.heapUsed)} MB in ${body.ms.toFixed(0)} ms`);
  t.ok(body.after.rss > 0 && body.after.external >= 0, 'RSS and external memory reported');
});
