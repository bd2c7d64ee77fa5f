import t from 'tap';
import { PassScheduler } from './pass-scheduler.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a later request never delays a pass already due sooner; a sooner one moves it up', async (t) => {
  const at: number[] = [];
  const start = performance.now();
  const s = new PassScheduler(async () => void at.push(performance.now() - start), 1000);
  s.schedule(50);
  s.schedule(400); // dropped: one is due sooner
  await sleep(200);
  t.equal(at.length, 1, 'one pass');
  t.ok((at[0] ?? 0) < 200, `at ~50 ms, not 400 (${Math.round(at[0] ?? 0)} ms)`);
  s.schedule(1000);
  s.schedule(20); // moves the pending pass up
  await sleep(150);
  t.equal(at.length, 2, 'the sooner request ran');
  await s.stop();
});

t.test('a request while a pass runs runs one more after it; none after stop', async (t) => {
  let runs = 0;
  let release: () => void = () => {};
  const s = new PassScheduler(async () => {
    runs++;
    if (runs === 1) await new Promise<void>((r) => (release = r));
  }, 10);
  s.schedule(0);
  await sleep(30);
  t.equal(runs, 1, 'first pass running');
  s.schedule(0);
  s.schedule(0);
  await sleep(30);
  t.equal(runs, 1, 'not two at once');
  release();
  await sleep(60);
  t.equal(runs, 2, 'the requests made meanwhile ran once, after it');
  const stopped = s.stop();
  s.schedule(0);
  await stopped;
  await sleep(30);
  t.equal(runs, 2, 'nothing after stop');
});
