// Builds a Go program that a test runs (a peer's conformance tool, say) from a module committed
// under tests/, once per machine: the binary is cached under $WEFT_CACHE/tools, keyed by the
// module's go.mod and go.sum, so a changed pin is a new build. Nothing is resolved here: the build
// runs with -mod=readonly against the committed go.sum, like playground/build/build-components.sh.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

function cacheRoot(): string {
  return process.env.WEFT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'weft');
}

/**
 * Path of `name` built from `pkg` in the module at `moduleDir`; builds it if it is not cached.
 * `test`: the package's test binary (`go test -c`), for a suite that ships as Go tests.
 */
export async function goTool(moduleDir: string, pkg: string, name: string, opts: { test?: boolean } = {}): Promise<string> {
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum']) hash.update(await readFile(join(moduleDir, f)));
  const dir = join(cacheRoot(), 'tools', `${name}-${hash.digest('hex').slice(0, 16)}`);
  const bin = join(dir, name);
  if (existsSync(bin)) return bin;
  await mkdir(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  const env = { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly -buildvcs=false', CGO_ENABLED: '0' };
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn('go', [...(opts.test ? ['test', '-c'] : ['build']), '-trimpath', '-o', tmp, pkg], { cwd: moduleDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => reject(new Error(`building ${name} needs go (scripts/install-system-deps.sh installs it): ${err.message}`, { cause: err })));
    child.on('close', (c) => resolve({ code: c, output }));
  });
  if (code !== 0) {
    await rm(tmp, { force: true });
    throw new Error(`go build ${pkg} in ${moduleDir} failed (${code}):\n${output.slice(-3000)}`);
  }
  // Two runs building at once each write their own file; the rename makes either one the binary.
  await rename(tmp, bin);
  return bin;
}
