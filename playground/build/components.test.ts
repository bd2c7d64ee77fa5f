// The playground's Go components are built from committed pins and nothing else: a changed pin is
// a new cache directory, an incomplete go.sum stops the build with a message that says what to
// do, and no build or install path asks a registry for "latest".
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const REPO = join(HERE, '..', '..');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}, cwd = REPO): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, timeout: 240_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A copy of playground/build (script, pins, list) that a test may damage, with its own cache. */
async function scratchBuild(t: Test): Promise<{ dir: string; cache: string }> {
  const root = await mkdtemp(join(tmpdir(), 'weft-pins-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'build');
  await cp(HERE, dir, { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
  return { dir, cache: join(root, 'cache') };
}

const binDirOf = async (dir: string, cache: string): Promise<string> => {
  const r = await run('bash', [join(dir, 'build-components.sh'), '--print-bin-dir'], { WEFT_CACHE: cache });
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
};

t.test('the cache directory is keyed by the pins: another go.sum or version is another directory', async (t) => {
  const { dir, cache } = await scratchBuild(t);
  const before = await binDirOf(dir, cache);
  t.match(before, new RegExp(`^${cache}/components/v1\\.\\d+\\.\\d+-[0-9a-f]{16}/bin$`));
  t.equal(await binDirOf(dir, cache), before, 'same pins, same directory');

  const sum = join(dir, 'components', 'go.sum');
  const original = await readFile(sum, 'utf8');
  await writeFile(sum, original.split('\n').slice(1).join('\n'));
  const changedSum = await binDirOf(dir, cache);
  t.not(changedSum, before, 'a go.sum change moves the cache');
  await writeFile(sum, original);

  const list = join(dir, 'components.list');
  await writeFile(list, `${await readFile(list, 'utf8')}#tool k8s.io/kubernetes/cmd/kubelet\n`);
  t.not(await binDirOf(dir, cache), before, 'building another binary moves the cache');
});

t.test('a go.sum with a line missing fails the build with a clear message and is left as committed', async (t) => {
  const { dir, cache } = await scratchBuild(t);
  const sum = join(dir, 'components', 'go.sum');
  const lines = (await readFile(sum, 'utf8')).split('\n');
  // cobra is needed by kubectl, helm and etcd alike: no build can succeed without its hash.
  const victim = lines.findIndex((l) => /^github\.com\/spf13\/cobra v\S+ h1:/.test(l));
  t.ok(victim >= 0, 'go.sum pins cobra');
  const damaged = lines.filter((_, i) => i !== victim).join('\n');
  await writeFile(sum, damaged);

  const r = await run('bash', [join(dir, 'build-components.sh')], { WEFT_CACHE: cache });
  t.not(r.code, 0, 'the build fails');
  t.match(r.stderr, /go\.sum/, 'the message names go.sum');
  t.match(r.stderr, /pin-components\.sh/, 'and says how to regenerate the pins');
  t.notMatch(r.stderr, /all components built/);
  t.equal(await readFile(sum, 'utf8'), damaged, 'nothing was added to go.sum behind our back');
});

t.test('no build or install path resolves a version at run time', async (t) => {
  // pin-components.sh is the one documented place that asks the module proxy (on the day a pin
  // is bumped); everything a build, an install or CI runs is checked here.
  const paths = ['.ci', 'scripts', 'playground/build/build-components.sh', 'images', 'package.json', 'helm'];
  const r = await run('git', ['grep', '-n', '-E', 'go mod tidy|go get |@latest|go install [^ ]+$|npm install [^-]|pip install', '--', ...paths]);
  t.equal(r.stdout, '', 'no go mod tidy, go get, @latest or unpinned installs');
  t.equal(r.code, 1, 'git grep found nothing (exit 1)');
});

t.test('the build runs read-only against the committed module files', async (t) => {
  const script = await readFile(join(HERE, 'build-components.sh'), 'utf8');
  t.match(script, /GOFLAGS="-mod=readonly/, 'GOFLAGS=-mod=readonly');
  const mod = await readFile(join(HERE, 'components', 'go.mod'), 'utf8');
  const versions = await readFile(join(HERE, 'versions.env'), 'utf8');
  const pin = (k: string) => new RegExp(`^${k}=(\\S+)`, 'm').exec(versions)?.[1] ?? 'missing';
  for (const [module, key] of [['k8s.io/kubernetes', 'K8S_VERSION'], ['go.etcd.io/etcd/server/v3', 'ETCD_VERSION'], ['helm.sh/helm/v3', 'HELM_VERSION'], ['github.com/containernetworking/cni', 'CNI_VERSION'], ['fortio.org/fortio', 'FORTIO_VERSION']] as const) {
    t.match(mod, new RegExp(`\\s${module.replace(/[./]/g, '\\$&')} ${pin(key).replace(/\./g, '\\.')}(\\s|$)`), `go.mod pins ${module} at versions.env's ${key}`);
  }
  const runtimeMod = await readFile(join(HERE, 'runtime', 'go.mod'), 'utf8');
  for (const [module, key] of [['github.com/containerd/containerd/v2', 'CONTAINERD_VERSION'], ['github.com/coredns/coredns', 'COREDNS_VERSION']] as const) {
    t.match(runtimeMod, new RegExp(`\\s${module.replace(/[./]/g, '\\$&')} ${pin(key).replace(/\./g, '\\.')}(\\s|$)`), `runtime/go.mod pins ${module} at versions.env's ${key}`);
  }
});

t.test('every binary in components.list is a tool of the module that builds it', async (t) => {
  const list = await readFile(join(HERE, 'components.list'), 'utf8');
  for (const [, module, pkg] of list.matchAll(/^#tool(?::(\S+))? (\S+)$/gm)) {
    const mod = await readFile(join(HERE, module ?? 'components', 'go.mod'), 'utf8');
    t.match(mod, new RegExp(`^\\s${pkg?.replace(/[./]/g, '\\$&')}$`, 'm'), `${pkg} is a tool of ${module ?? 'components'}/go.mod`);
  }
});
