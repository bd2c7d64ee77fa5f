// The idle trim: once a busy process goes idle, the garbage its burst left in V8's heap is
// collected and the C heap trimmed, without waiting for V8's next collection of its own.
import { spawn } from 'node:child_process';
import t from 'tap';

// A burst: ~40 MB of objects that live long enough to reach the old generation, dropped at its
// end, then nothing at all. Prints the heap in use every 250 ms.
const child = `
  const { startHeapTrimmer } = await import(${JSON.stringify(new URL('./trim.ts', import.meta.url).href)});
  startHeapTrimmer();
  let held = [];
  while (held.length < 400) {
    held.push(Array.from({ length: 1000 }, (_, i) => ({ i, s: 'x'.repeat(16) + i })));
    await new Promise((r) => setImmediate(r));
  }
  held = undefined;
  const report = () => console.log(JSON.stringify({ heapMB: process.memoryUsage().heapUsed / 2 ** 20 }));
  report();
  setInterval(report, 250);
`;

t.test('the garbage of a burst is collected within a few seconds of going idle', async (t) => {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', child], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void proc.kill());
  const samples: number[] = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    // The check runs every 2 s: busy, then idle, then the collection; 10 s leave room for a loaded
    // machine. V8 left alone does not collect this heap for far longer (the test fails then).
    let timer: NodeJS.Timeout | undefined;
    proc.on('exit', (code) => reject(new Error(`the child exited (${code})`)));
    proc.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
        samples.push((JSON.parse(buffered.slice(0, i)) as { heapMB: number }).heapMB);
        timer ??= setTimeout(resolve, 10_000);
        buffered = buffered.slice(i + 1);
        if (samples.length > 1 && (samples[samples.length - 1] ?? Infinity) < (samples[0] ?? 0) / 3) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
  });
  const [first = 0] = samples;
  const last = samples[samples.length - 1] ?? Infinity;
  t.ok(first > 20, `the burst left garbage in the heap (${first.toFixed(1)} MB)`);
  t.ok(last < first / 3, `collected once idle: ${first.toFixed(1)} -> ${last.toFixed(1)} MB after ${(samples.length * 0.25).toFixed(1)} s`);
});
