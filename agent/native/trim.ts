// Gives memory back once traffic stops. A burst of traffic leaves two kinds of it behind: V8's
// heap holds the burst's garbage until its next major collection, which an idle process may not
// have for minutes (and the external memory of the chunk buffers goes with it), and glibc keeps
// the pages the burst touched (TLS records, nghttp2 frames, socket reads) in its arenas after
// they are freed. So an agent that carried a load stayed at several times its idle RSS long after
// it, and an agent that had just opened a thousand tunnels held their set-up garbage as if it
// were their state. Once the process goes idle after being busy: one full collection, then
// malloc_trim. Not V8's last-resort flavour of collection: it also flushes functions' bytecode,
// which the next burst of traffic would pay to compile again.
// Idle is judged by the process's own CPU time, checked every few seconds: one getrusage, no
// work on the data path.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { trimHeap } from './sockopt.ts';

/** How often the process's CPU time is looked at; a trim follows a busy interval within two. */
const CHECK_INTERVAL_MS = 2000;
/** Below this share of one core over an interval, the agent counts as idle. */
const IDLE_CPU_SHARE = 0.05;
/**
 * At most one forced collection per this long. It costs ~30 ms of CPU with the agent's bundle
 * loaded and 150 MB of garbage; an agent whose traffic hovers at the idle threshold would
 * otherwise pay that every few seconds.
 */
const MIN_COLLECTION_GAP_MS = 30_000;

type Collect = (options: { type: 'major'; execution: 'sync'; flavor: 'regular' }) => void;

/**
 * V8's own gc(), without exposing it to the agent's code: the flag makes it a global of contexts
 * created afterwards, and one throwaway context hands it over. Undefined if V8 refuses.
 */
function fullCollection(): Collect | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as Collect) : undefined;
  } catch {
    return undefined;
  }
}

let timer: NodeJS.Timeout | undefined;
let collector: Collect | undefined | null = null;
/** The full collection, looked up once (null: not yet). */
const collection = (): Collect | undefined => (collector === null ? (collector = fullCollection()) : collector);

export interface MemoryLevels {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const levels = (): MemoryLevels => {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
};

/**
 * What the idle trim does, on demand (the admin endpoint's POST /release_memory): one full
 * collection of this thread's heap, then malloc_trim. What is left is what the process holds, not
 * garbage it has yet to collect: the figure to compare when asking whether memory grows. Costs a
 * pause of this thread (~30 ms with the agent's heap); data-plane workers' heaps are not
 * collected (each collects on its own).
 */
export function releaseMemory(): { before: MemoryLevels; after: MemoryLevels; ms: number } {
  const before = levels();
  const started = performance.now();
  collection()?.({ type: 'major', execution: 'sync', flavor: 'regular' });
  trimHeap();
  return { before, after: levels(), ms: performance.now() - started };
}

/**
 * Starts the idle check (once per process; later calls do nothing). Never keeps the process alive.
 * WEFT_IDLE_TRIM=false leaves it off, to compare memory and CPU without it.
 */
export function startHeapTrimmer(env: NodeJS.ProcessEnv = process.env): void {
  if (timer || env.WEFT_IDLE_TRIM === 'false') return;
  const collect = collection();
  let last = process.cpuUsage();
  let busySinceTrim = false;
  let collectedAt = -Infinity;
  timer = setInterval(() => {
    const used = process.cpuUsage(last);
    last = process.cpuUsage();
    const busy = (used.user + used.system) / 1000 > CHECK_INTERVAL_MS * IDLE_CPU_SHARE;
    if (busy) busySinceTrim = true;
    else if (busySinceTrim) {
      busySinceTrim = false;
      const now = performance.now();
      if (collect && now - collectedAt >= MIN_COLLECTION_GAP_MS) {
        collectedAt = now;
        collect({ type: 'major', execution: 'sync', flavor: 'regular' });
      }
      trimHeap();
      // The collection's own CPU time must not count as the next interval's traffic.
      last = process.cpuUsage();
    }
  }, CHECK_INTERVAL_MS);
  timer.unref();
}
