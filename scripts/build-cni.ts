// Builds dist/weft-cni: the CNI plugin as ONE self-contained executable, because a node has no
// Node.js. esbuild bundles cni-plugin/ into one CommonJS file; Node's single-executable
// application support turns that into a blob (with V8's code cache, so the plugin's code is not
// compiled at every pod event); postject injects the blob into a stripped copy of the pinned
// Node binary. The result is smoke-tested (VERSION) before it replaces the previous build.
//
// Inputs are hashed (the bundle, the SEA settings, the Node binary); an unchanged build is
// skipped, so tests that need the executable can call buildCni() every time.
//
//   node scripts/build-cni.ts [--force]
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { CodedError } from '../api/coded-error.ts';

const run = promisify(execFile);

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = join(ROOT, 'cni-plugin', 'main.ts');
const PINNED_NODE = join(ROOT, 'node_modules', '.bin', 'node');
const POSTJECT = join(ROOT, 'node_modules', 'postject', 'dist', 'cli.js');
/** The fuse Node looks for to know a SEA blob was injected (Node's documented value). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** Bump when this script changes what it produces from the same inputs. */
const RECIPE = 'weft-cni-sea/1';

export interface BuildCniOptions {
  /** Default: dist/weft-cni in the repository. */
  outFile?: string;
  /** Rebuild even when the inputs are unchanged. */
  force?: boolean;
  log?: (msg: string) => void;
}

export interface BuildCniResult {
  path: string;
  rebuilt: boolean;
  sizeBytes: number;
  inputsHash: string;
  /** Wall time of this call. */
  ms: number;
}

export class BuildCniError extends CodedError<'BUNDLE_FAILED' | 'SEA_FAILED' | 'SMOKE_TEST_FAILED'> {
  override readonly name = 'BuildCniError';
}

export async function buildCni(opts: BuildCniOptions = {}): Promise<BuildCniResult> {
  const started = performance.now();
  const log = opts.log ?? (() => undefined);
  const outFile = opts.outFile ?? join(ROOT, 'dist', 'weft-cni');
  const hashFile = `${outFile}.inputs-sha256`;
  const node = await realpath(PINNED_NODE);

  const bundle = await bundlePlugin();
  // execArgvExtension "none": the runtime's environment (libcni passes its own through) must not
  // be able to inject Node options (NODE_OPTIONS=--require ...) into the plugin. A user-land
  // snapshot (useSnapshot) was measured slower to start than Node's built-in one plus the code
  // cache, and node:http cannot be snapshotted anyway.
  const seaConfig = { disableExperimentalSEAWarning: true, useCodeCache: true, useSnapshot: false, execArgvExtension: 'none' };
  const nodeStat = await stat(node);
  const inputsHash = createHash('sha256')
    .update(RECIPE)
    .update(JSON.stringify(seaConfig))
    .update(`${node}:${nodeStat.size}:${nodeStat.mtimeMs}`)
    .update(bundle)
    .digest('hex');

  const previous = await readFile(hashFile, 'utf8').catch(() => '');
  const existing = await stat(outFile).catch(() => null);
  if (!opts.force && existing !== null && previous.trim() === inputsHash) {
    log(`weft-cni: up to date (${outFile})`);
    return { path: outFile, rebuilt: false, sizeBytes: existing.size, inputsHash, ms: performance.now() - started };
  }

  await mkdir(dirname(outFile), { recursive: true });
  const work = await mkdtemp(join(dirname(outFile), '.weft-cni-build-'));
  try {
    const main = join(work, 'weft-cni.cjs');
    const blob = join(work, 'weft-cni.blob');
    const exe = join(work, 'weft-cni');
    await writeFile(main, bundle);
    await writeFile(join(work, 'sea-config.json'), JSON.stringify({ main, output: blob, ...seaConfig }));
    await step('SEA_FAILED', 'generate the SEA blob', node, ['--experimental-sea-config', join(work, 'sea-config.json')], work);

    await copyFile(node, exe);
    // The pinned Node carries ~18 MB of debug symbols a plugin never needs; strip them before
    // injecting (stripping after would drop the injected note). Optional: skipped without binutils.
    await run('strip', ['--strip-all', exe]).catch((err: Error) => log(`weft-cni: not stripped (${err.message})`));
    await step('SEA_FAILED', 'inject the SEA blob', node, [POSTJECT, exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], work);

    await smokeTest(exe);
    await rename(exe, outFile);
    await writeFile(hashFile, `${inputsHash}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const { size } = await stat(outFile);
  log(`weft-cni: built ${outFile} (${(size / 1e6).toFixed(1)} MB)`);
  return { path: outFile, rebuilt: true, sizeBytes: size, inputsHash, ms: performance.now() - started };
}

async function bundlePlugin(): Promise<Buffer> {
  try {
    const result = await build({
      entryPoints: [ENTRY],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node24',
      write: false,
      minifySyntax: true,
      minifyWhitespace: true,
      legalComments: 'none',
      logLevel: 'silent',
    });
    const file = result.outputFiles[0];
    if (file === undefined) throw new Error('esbuild produced no output');
    return Buffer.from(file.contents);
  } catch (err) {
    throw new BuildCniError('BUNDLE_FAILED', `bundling ${ENTRY}: ${(err as Error).message}`);
  }
}

async function step(code: BuildCniError['code'], what: string, cmd: string, args: string[], cwd: string): Promise<void> {
  try {
    await run(cmd, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new BuildCniError(code, `${what}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** The fresh executable must answer VERSION with its supported versions, or it is not shipped. */
async function smokeTest(exe: string): Promise<void> {
  const child = execFile(exe, [], { env: { CNI_COMMAND: 'VERSION' }, timeout: 10_000 });
  child.stdin?.end('{"cniVersion":"1.1.0"}');
  const out = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}: ${text}`))));
  }).catch((err: Error) => {
    throw new BuildCniError('SMOKE_TEST_FAILED', `${exe} VERSION: ${err.message}`);
  });
  const parsed = JSON.parse(out) as { supportedVersions?: unknown };
  if (!Array.isArray(parsed.supportedVersions) || !parsed.supportedVersions.includes('1.1.0')) {
    throw new BuildCniError('SMOKE_TEST_FAILED', `${exe} VERSION answered ${out.trim()}`);
  }
}

if (process.argv[1] !== undefined && (await realpath(process.argv[1])) === fileURLToPath(import.meta.url)) {
  const result = await buildCni({ force: process.argv.includes('--force'), log: (m) => console.error(m) });
  console.log(JSON.stringify(result));
}
