// Test support for the L7 fuzz targets (*.fuzz.test.ts): an uncaught exception anywhere in the
// process is the crash these targets look for, and it must fail the input that caused it, so that
// the runner saves that input to the corpus. A listener records it while a target runs; the
// target's check() throws it. (Test harness only: the agent itself has no such handler.)

import type { Test } from 'tap';

export type CrashWatch = { /** Throws the crash recorded since the last call, if any. */ rethrow(): void };

export function watchCrashes(t: Test): CrashWatch {
  let crash: unknown;
  const record = (err: unknown): void => {
    crash ??= err;
  };
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
  t.teardown(() => {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
  });
  return {
    rethrow: () => {
      const c = crash;
      crash = undefined;
      if (c !== undefined) throw c instanceof Error ? c : new Error(`non-Error thrown: ${JSON.stringify(c) ?? typeof c}`);
    },
  };
}

/** `promise`, or a rejection with `what` if it has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)));
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The session serveHttp() made for the n-th connection of a listener, once it has accepted it. */
export async function nth<T>(outcomes: Promise<T>[], n: number): Promise<T> {
  while (outcomes.length <= n) await new Promise((r) => setTimeout(r, 1));
  return outcomes[n] as Promise<T>;
}
