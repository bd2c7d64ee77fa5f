// The agent's signal handling (signals.ts) with a stand-in start and signal source: a signal
// during the start is answered with the full stop once started, never dropped or fatal.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { stopOnSignals, type Stop } from './signals.ts';

function harness() {
  const source = new EventEmitter();
  const exits: number[] = [];
  const stops: string[] = [];
  let resolveStart!: (s: Stop) => void;
  let rejectStart!: (e: Error) => void;
  const started = new Promise<Stop>((res, rej) => {
    resolveStart = res;
    rejectStart = rej;
  });
  const stop: Stop = async (signal) => {
    stops.push(signal);
  };
  stopOnSignals(started, { source, exit: (c) => exits.push(c) });
  const settle = () => new Promise((r) => setImmediate(r));
  return { source, exits, stops, start: () => resolveStart(stop), fail: () => rejectStart(new Error('boom')), settle };
}

t.test('a SIGTERM while starting is answered with the stop once the agent has started', async (t) => {
  const h = harness();
  h.source.emit('SIGTERM');
  await h.settle();
  t.same([h.stops, h.exits], [[], []], 'nothing yet: the process keeps starting');
  h.start();
  await h.settle();
  await h.settle();
  t.same(h.stops, ['SIGTERM'], 'then stopped, with the signal that came');
  t.same(h.exits, [0], 'and the process exits 0 after the stop');
});

t.test('after the start: one stop, whatever more signals come', async (t) => {
  const h = harness();
  h.start();
  await h.settle();
  h.source.emit('SIGTERM');
  h.source.emit('SIGINT');
  await h.settle();
  t.same(h.stops, ['SIGTERM']);
  t.same(h.exits, [0]);
});

t.test('a second signal while starting ends the process at once', async (t) => {
  const h = harness();
  h.source.emit('SIGINT');
  h.source.emit('SIGINT');
  await h.settle();
  t.same(h.exits, [1]);
  t.same(h.stops, []);
});

t.test('a failed start exits 1', async (t) => {
  const h = harness();
  h.fail();
  await h.settle();
  t.same(h.exits, [1]);
});
