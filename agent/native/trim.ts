// Gives the C heap back once traffic stops. glibc keeps the pages a burst of traffic touched (TLS
// records, nghttp2 frames, socket reads) in its arenas after they are freed, so an agent that
// carried a load stayed at several times its idle RSS long after it. Idle is judged by the
// process's own CPU time, checked every few seconds: one getrusage, no work on the data path.
import { trimHeap } from './sockopt.ts';

// Not shorter: V8 frees a transfer's buffers in a collection some seconds after it ends, and a
// trim before that finds little to return (bench/hbone-micro.ts: with 2 s the process stayed at
// 245-250 MB after a 1 GiB upload, with 5 s it came down to ~190 MB).
const CHECK_INTERVAL_MS = 5000;
/** Below this share of one core over an interval, the agent counts as idle. */
const IDLE_CPU_SHARE = 0.05;

let timer: NodeJS.Timeout | undefined;

/** Starts the idle check (once per process; later calls do nothing). Never keeps the process alive. */
export function startHeapTrimmer(): void {
  if (timer) return;
  let last = process.cpuUsage();
  let busySinceTrim = false;
  timer = setInterval(() => {
    const used = process.cpuUsage(last);
    last = process.cpuUsage();
    const busy = (used.user + used.system) / 1000 > CHECK_INTERVAL_MS * IDLE_CPU_SHARE;
    if (busy) busySinceTrim = true;
    else if (busySinceTrim) {
      busySinceTrim = false;
      trimHeap();
    }
  }, CHECK_INTERVAL_MS);
  timer.unref();
}
