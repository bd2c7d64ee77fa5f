import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReviewGate, ReviewGateError } from './review-gate.ts';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

t.test('at most `concurrency` reviews run; the rest wait in order, up to the queue size', async (t) => {
  const gate = new ReviewGate({ concurrency: 2, queue: 1, maxWaitMs: 5_000 });
  const started: number[] = [];
  const blockers = [deferred(), deferred(), deferred()];
  const runs = blockers.map((b, i) =>
    gate.run(async () => {
      started.push(i);
      await b.promise;
      return i;
    }),
  );
  await sleep(5);
  t.strictSame(started, [0, 1]);
  t.equal(gate.inFlight, 2);
  t.equal(gate.queued, 1);
  await t.rejects(
    gate.run(async () => 9),
    { name: 'ReviewGateError', code: 'REVIEW_QUEUE_FULL' },
    'a full queue refuses at once',
  );
  blockers[0]?.resolve();
  await sleep(5);
  t.strictSame(started, [0, 1, 2], 'the slot went to the one waiting');
  blockers[1]?.resolve();
  blockers[2]?.resolve();
  t.strictSame(await Promise.all(runs), [0, 1, 2]);
  t.equal(gate.inFlight, 0);
});

t.test('a review that waits too long is refused, and a failed review frees its slot', async (t) => {
  const gate = new ReviewGate({ concurrency: 1, queue: 5, maxWaitMs: 30 });
  const block = deferred();
  const first = gate.run(() => block.promise);
  const err = await gate.run(async () => 1).catch((e: unknown) => e);
  t.ok(err instanceof ReviewGateError && err.code === 'REVIEW_QUEUE_TIMEOUT');
  t.equal(gate.queued, 0, 'it left the queue');
  block.resolve();
  await first;
  await t.rejects(gate.run(() => Promise.reject(new Error('api down'))), /api down/);
  t.equal(await gate.run(async () => 2), 2, 'the slot is free again');
});

t.test('priority reviews have their own lane', async (t) => {
  const gate = new ReviewGate({ concurrency: 1, queue: 1, maxWaitMs: 5_000 });
  const block = deferred();
  const busy = gate.run(() => block.promise);
  const waiting = gate.run(async () => 'stranger');
  await t.rejects(gate.run(async () => 'x'), { code: 'REVIEW_QUEUE_FULL' });
  t.equal(await gate.run(async () => 'known agent', true), 'known agent', 'runs while strangers fill their lane');
  block.resolve();
  await busy;
  t.equal(await waiting, 'stranger');
});
