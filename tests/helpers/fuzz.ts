// One way to run a fuzz target, for every component: replay the committed corpus first (each file
// is one input that once mattered: a seed, or a crash that became a regression test), then let
// fast-check generate and shrink inputs for a bounded time.
//
// Why fast-check and not coverage-guided fuzzing: @jazzer.js/core 4.0.0 ships its libFuzzer addon
// prebuilt for glibc >= 2.38 only (Debian 12 has 2.36), and older releases download their addon
// from GitHub at install time, which a pinned, registry-only install cannot do. The targets are
// written so that they can be moved under a coverage-guided engine unchanged: each is a function
// of one Buffer that must return or throw a *handled* error, never crash or hang.
//
// Budget: WEFT_FUZZ_SECONDS per target (default 15 s, so that CI spends a few minutes in all);
// `WEFT_FUZZ_SECONDS=600 npx tap path/to/x.fuzz.test.ts` is a longer local run. A failing input
// is written to the target's corpus directory, so committing it turns it into a regression test.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';

export interface FuzzOptions<T> {
  /** Directory holding one file per committed input (created on the first failure). */
  corpusDir: string;
  /** Generates inputs; a grammar-aware arbitrary finds far more than random bytes. */
  arbitrary: fc.Arbitrary<T>;
  /** Turns a corpus file into an input, and an input into a corpus file. */
  decode: (file: Buffer) => T;
  encode: (input: T) => Buffer;
  /** The property: resolves when the input was handled, rejects or throws when it was not. */
  check: (input: T) => Promise<void> | void;
  /** Overrides WEFT_FUZZ_SECONDS. */
  seconds?: number;
}

export interface FuzzReport {
  corpus: number;
  generated: number;
  seconds: number;
  failure?: { input: string; error: string; savedAs: string };
}

/** The corpus format of targets whose inputs are plain data: one JSON document per file. */
export function jsonCorpus<T>(): Pick<FuzzOptions<T>, 'encode' | 'decode'> {
  return {
    encode: (input) => Buffer.from(JSON.stringify(input), 'utf8'),
    decode: (file) => JSON.parse(file.toString('utf8')) as T,
  };
}

export function fuzzSeconds(fallback = 15): number {
  const v = Number(process.env.WEFT_FUZZ_SECONDS);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

export async function runFuzz<T>(opts: FuzzOptions<T>): Promise<FuzzReport> {
  const started = performance.now();
  const files = await readdir(opts.corpusDir).catch(() => [] as string[]);
  for (const f of files.sort()) {
    const input = opts.decode(await readFile(join(opts.corpusDir, f)));
    try {
      await opts.check(input);
    } catch (err) {
      return report(files.length, 0, started, { input: f, error: describe(err), savedAs: join(opts.corpusDir, f) });
    }
  }
  const budgetMs = (opts.seconds ?? fuzzSeconds()) * 1000;
  let generated = 0;
  const result = await fc.check(
    fc.asyncProperty(opts.arbitrary, async (input) => {
      generated++;
      await opts.check(input);
    }),
    { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: budgetMs, markInterruptAsFailure: false, endOnFailure: false },
  );
  if (!result.failed || result.counterexample === null) return report(files.length, generated, started);
  const [input] = result.counterexample;
  const bytes = opts.encode(input);
  await mkdir(opts.corpusDir, { recursive: true });
  const savedAs = join(opts.corpusDir, `crash-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`);
  await writeFile(savedAs, bytes);
  return report(files.length, generated, started, { input: bytes.toString('latin1').slice(0, 400), error: describe(result.errorInstance), savedAs });
}

function report(corpus: number, generated: number, started: number, failure?: FuzzReport['failure']): FuzzReport {
  const r: FuzzReport = { corpus, generated, seconds: Math.round((performance.now() - started) / 100) / 10 };
  if (failure) r.failure = failure;
  return r;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
}
