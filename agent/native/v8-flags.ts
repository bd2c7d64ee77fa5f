// V8 settings the agent's data path wants, set at start from inside the process: the chart can
// put Node options in NODE_OPTIONS, and NODE_OPTIONS refuses this one.
//
// --external-memory-accounted-in-global-limit: every chunk the agent moves is a fresh buffer
// whose memory lives outside V8's heap (Node allocates them; nothing in JavaScript can lend
// nghttp2 or TLSWrap a reused one). By default V8 answers the growth of that external memory with
// full mark-compact collections, about 60 per GB carried. With the flag it counts towards the heap's
// global limit instead, and the young-generation collections, which free the dead chunks with
// their wrappers, keep up on their own. Measured on 4 GiB of 64 KiB buffers with ~64 in flight:
// 47-50 major collections and 0.31-0.42 CPU s become 0 major collections and 0.12-0.20 CPU s, for
// 12 MB more peak RSS (1 MB semi-spaces, as the chart sets). Set at run time it acts as on the
// command line (same counts).
import { setFlagsFromString } from 'node:v8';

let done = false;

/** Applies the flags once per process (they are process-wide: worker threads share them). */
export function tuneV8(): void {
  if (done) return;
  done = true;
  setFlagsFromString('--external-memory-accounted-in-global-limit');
}
