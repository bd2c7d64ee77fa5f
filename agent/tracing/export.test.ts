// The real OTLP exporter against a collector that never answers, the worst case for an exporter: a
// collector process that is stopped (SIGSTOP) with its accept queue full, so that the kernel drops
// the agent's SYNs and a connection never completes. Spans keep coming for several export
// deadlines; afterwards nothing may be left holding them: no connection still in its handshake, no
// batch retained (heap and array buffers back at their level), every span counted as exported or
// dropped, and shutdown returns without waiting for the kernel to give up on the handshake.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { traceSpansDropped, traceSpansExported } from '../metrics.ts';
import { DEFAULT_TRACING, RequestTracing, type TracedRequest } from './index.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A listener with a one-connection backlog in its own process, so that SIGSTOP freezes it. */
async function frozenCollector(): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  child.kill('SIGSTOP');
  return { port: Number(line.toString().trim()), child };
}

/** Fills the stopped listener's accept queue: returns once a new connection hangs in its handshake. */
async function fillAcceptQueue(port: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 16; i++) {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    sockets.push(s);
    const connected = await Promise.race([once(s, 'connect').then(() => true), sleep(300).then(() => false)]);
    if (!connected) return sockets;
  }
  throw new Error('the stopped listener kept completing handshakes');
}

/** This network namespace's TCP sockets to `port` in SYN_SENT (state 02 in /proc/net/tcp). */
function handshakesTo(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[2]?.endsWith(`:${hex}`) && f[3] === '02';
    }).length;
}

async function counted(): Promise<number> {
  const dropped = (await traceSpansDropped.get()).values.reduce((a, v) => a + v.value, 0);
  const exported = (await traceSpansExported.get()).values.reduce((a, v) => a + v.value, 0);
  return dropped + exported;
}

function retainedBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

t.test('a collector whose handshake never completes: the exporter holds nothing past its deadline', async (t) => {
  const collector = await frozenCollector();
  const fillers = await fillAcceptQueue(collector.port);
  t.teardown(() => {
    for (const s of fillers) s.destroy();
    collector.child.kill('SIGCONT');
    collector.child.kill();
  });
  const settlingHandshakes = handshakesTo(collector.port);

  const DEADLINE = 300;
  const BATCH = 16;
  const tracing = new RequestTracing(
    { ...DEFAULT_TRACING, endpoint: `http://127.0.0.1:${collector.port}`, samplingRatio: 1, maxQueueSize: 4 * BATCH, maxExportBatchSize: BATCH, scheduledDelayMs: 20, exportTimeoutMs: DEADLINE },
    { node: 'n' },
  );
  // 128 KiB of path per span, so that a batch held anywhere (spans, or their serialized request)
  // shows in the heap beside the noise: one batch is ~2 MiB of spans and ~2 MiB serialized.
  const request = (i: number): TracedRequest => ({ method: 'GET', path: `/${String(i).padStart(8, '0')}${'x'.repeat(128 * 1024)}`, host: 'shop.example', protocol: 'http/1.1', grpc: false, header: () => undefined });

  // One warm-up span through the same code paths, so that what is loaded and compiled counts in the baseline.
  tracing.startServerSpan(request(0)).end({ status: 200 });
  await sleep(DEADLINE * 3);
  const before = retainedBytes();
  const countedBefore = await counted();

  let created = 0;
  let maxHandshakes = 0;
  // Several deadlines, and enough spans for several batches even when the machine is slow.
  const until = Date.now() + DEADLINE * 6;
  const cap = Date.now() + 15_000;
  while ((Date.now() < until || created < 8 * BATCH) && Date.now() < cap) {
    for (let i = 0; i < 8; i++, created++) tracing.startServerSpan(request(created)).end({ status: 200 });
    maxHandshakes = Math.max(maxHandshakes, handshakesTo(collector.port) - settlingHandshakes);
    await sleep(10);
  }
  t.ok(created >= 8 * BATCH, `${created} spans offered`);
  t.ok(maxHandshakes <= 1, `at most one export on the wire at a time (${maxHandshakes} handshakes seen at once)`);

  // What is still queued goes out one batch per deadline (at most five: the queue, and the batch
  // in flight); once every span is accounted for, nothing may hold one. Under load timers run late,
  // hence the wait for the count rather than a fixed sleep.
  const settled = Date.now() + 10_000;
  while ((await counted()) - countedBefore < created && Date.now() < settled) await sleep(50);
  t.equal((await counted()) - countedBefore, created, 'every span offered is counted, as exported or dropped');
  await sleep(100);
  t.equal(handshakesTo(collector.port) - settlingHandshakes, 0, 'no connection left in its handshake after the deadline');
  const grown = retainedBytes() - before;
  t.ok(grown < 2 * 1024 * 1024, `heap + array buffers ${(grown / 1048576).toFixed(2)} MiB above the level before the collector went silent (a batch is ~4 MiB)`);
  const byReason: Record<string, number> = Object.fromEntries((await traceSpansDropped.get()).values.map((v) => [String(v.labels.reason), v.value]));
  t.ok((byReason.export_failed ?? 0) > 0, `spans of exports past their deadline counted (export_failed ${byReason.export_failed})`);
  t.comment(`dropped by reason: ${JSON.stringify(byReason)}`);

  const started = Date.now();
  const done = await Promise.race([tracing.shutdown().then(() => true), sleep(DEADLINE * 6).then(() => false)]);
  t.ok(done, `shutdown returned (${Date.now() - started} ms) instead of waiting for the kernel to give up on a handshake`);
});
