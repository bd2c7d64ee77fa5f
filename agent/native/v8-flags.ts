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
//
// WEFT_V8_FLAGS replaces the default (space-separated V8 flags; empty: none), so that the flag
// can be compared on a running mesh (bench/run.ts BENCH_WEFT_B) and turned off without a release.
import { setFlagsFromString } from 'node:v8';

export const DEFAULT_V8_FLAGS = '--external-memory-accounted-in-global-limit';

let applied: string[] | undefined;

/** The flags WEFT_V8_FLAGS asks for, or the default when it is unset. */
export function v8FlagsFrom(env: NodeJS.ProcessEnv): string[] {
  const value = env.WEFT_V8_FLAGS ?? DEFAULT_V8_FLAGS;
  return value.split(/\s+/).filter((f) => f.length > 0);
}

/** Applies the flags once per process (they are process-wide: worker threads share them); returns them. */
export function tuneV8(env: NodeJS.ProcessEnv = process.env): string[] {
  if (applied) return applied;
  applied = v8FlagsFrom(env);
  for (const flag of applied) setFlagsFromString(flag);
  return applied;
}
