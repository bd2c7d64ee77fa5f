// `helm uninstall` takes Weft off every node: the agent watches its own DaemonSet and, stopped
// after that DaemonSet is gone, removes the CNI entry and the `inet weft` table and replaces the
// weft-cni binary with its tear-down stub. Proven against a real kube-apiserver (a bare playground, --no-mesh) with the chart's own
// RBAC, applied for real:
// - the watch (agent/kube/daemonset-watch.ts), with a token of the chart's ServiceAccount: never
//   seen is not deleted; present; deleted within a second; foreground deletion is 'deleting'; a
//   token without the Role is refused (403) and the state stays unknown; the watch outlives
//   server-ended watches and dropped connections, and a relist sees a deletion it missed;
// - the SIGTERM decision end to end, on one real agent process in the playground's node network
//   namespace with its own CNI directories: DaemonSet present, everything stays; DaemonSet deleted,
//   the conflist gets its exact bytes back, the binary is the stub and the table is gone.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DaemonSetWatch } from '../agent/kube/daemonset-watch.ts';
import { UNINSTALLED_STUB } from '../agent/cni/uninstalled-stub.ts';
import { Playground, REPO, sh, uniqueName } from './helpers/playground.ts';
import type { Result } from './helpers/playground.ts';

const CHART = join(REPO, 'helm/weft');
const NS = `weft-u${randomBytes(3).toString('hex')}`;
const NAME = 'weft-agent';
const pg = new Playground(uniqueName('un'));

let kubectlBin = '';
let kubeconfig = '';
let apiServer: URL;
let netns = '';
let dir = '';
let caFile = '';
let agentToken = '';
let strangerToken = '';

const kubectl = (args: string[], input?: string): Promise<Result> =>
  sh(kubectlBin, [`--kubeconfig=${kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });

async function must(r: Promise<Result>, what: string): Promise<string> {
  const done = await r;
  if (done.code !== 0) throw new Error(`${what}: ${done.stderr}`);
  return done.stdout;
}

t.before(async () => {
  const s = await pg.start(1, ['--no-mesh']);
  kubeconfig = s.kubeconfig;
  kubectlBin = s.kubectl;
  apiServer = new URL(s.apiServer);
  netns = s.nodes[0]?.netns ?? '';
  dir = await mkdtemp(join(tmpdir(), 'weft-uninstall-'));
  const config = JSON.parse(await readFile(kubeconfig, 'utf8')) as { clusters: { cluster: { 'certificate-authority-data': string } }[] };
  caFile = join(dir, 'kube-ca.crt');
  await writeFile(caFile, Buffer.from(config.clusters[0]?.cluster['certificate-authority-data'] ?? '', 'base64'));

  // The chart's ServiceAccount and agent RBAC, rendered for this release namespace.
  await must(kubectl(['create', 'namespace', NS]), 'create namespace');
  const helm = join(dirname(kubectlBin), 'helm');
  const rbac = await must(sh(helm, ['template', 'weft', CHART, '-n', NS, '--show-only', 'templates/serviceaccounts.yaml', '--show-only', 'templates/agent-rbac.yaml']), 'helm template');
  await must(kubectl(['apply', '-f', '-'], rbac), 'apply the chart RBAC');
  await must(kubectl(['-n', NS, 'create', 'serviceaccount', 'stranger']), 'create a ServiceAccount without the Role');
  agentToken = join(dir, 'agent-token');
  strangerToken = join(dir, 'stranger-token');
  await writeFile(agentToken, await must(kubectl(['-n', NS, 'create', 'token', NAME, '--duration=1h']), 'token'), { mode: 0o600 });
  await writeFile(strangerToken, await must(kubectl(['-n', NS, 'create', 'token', 'stranger', '--duration=1h']), 'token'), { mode: 0o600 });
});
t.teardown(async () => {
  await pg.down();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A DaemonSet named like the chart's; it matches no node, so it runs no pod. */
const daemonSet = (finalizers: string[] = []) => ({
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name: NAME, namespace: NS, ...(finalizers.length ? { finalizers } : {}) },
  spec: {
    selector: { matchLabels: { app: 'weft-uninstall-test' } },
    template: {
      metadata: { labels: { app: 'weft-uninstall-test' } },
      spec: { nodeSelector: { 'weft.dev/no-such-node': 'true' }, containers: [{ name: 'agent', image: 'informational', command: ['sleep', 'infinity'] }] },
    },
  },
});

async function createDaemonSet(finalizers: string[] = []): Promise<void> {
  await must(kubectl(['apply', '-f', '-'], JSON.stringify(daemonSet(finalizers))), 'create the DaemonSet');
}

/** Gone for sure, finalizers and all: each test starts from no DaemonSet. */
async function removeDaemonSet(): Promise<void> {
  await kubectl(['-n', NS, 'patch', 'daemonset', NAME, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  await kubectl(['-n', NS, 'delete', 'daemonset', NAME, '--ignore-not-found', '--wait=true', '--timeout=30s']);
}

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function watch(t: Test, tokenFile: string, opts: { server?: string; watchSeconds?: number } = {}): { w: DaemonSetWatch; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const w = new DaemonSetWatch({
    namespace: NS,
    name: NAME,
    access: { server: opts.server ?? apiServer.origin, caFile, tokenFile },
    log: (level, msg, fields = {}) => void logs.push({ level, msg, fields }),
    backoff: { firstMs: 100, maxMs: 500 },
    ...(opts.watchSeconds ? { watchSeconds: opts.watchSeconds } : {}),
  });
  t.teardown(() => w.close());
  return { w, logs };
}

/** Polls every 10 ms; resolves with the milliseconds it took. */
async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const started = performance.now();
  while (!(await ok())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - started;
}

t.test("watch with the chart's token: never seen is not deleted; present; deleted within a second", async (t) => {
  await removeDaemonSet();
  const { w } = watch(t, agentToken);
  await until('the first answer', () => w.lastError() !== undefined || w.state() !== 'unknown');
  t.equal(w.state(), 'unknown', 'a DaemonSet never seen is not taken as deleted');
  t.match(w.lastError(), /KUBE_NOT_FOUND/, String(w.lastError()));

  await createDaemonSet();
  await until('present', () => w.state() === 'present');
  await until('watching', () => w.snapshot().watching);
  t.pass('created: present, and watching (the chart Role allows list and watch of this name)');
  t.equal(w.lastError(), undefined, 'no error once watching');

  // Timed from the start of `kubectl delete`, its own start-up included.
  const before = performance.now();
  await must(kubectl(['-n', NS, 'delete', 'daemonset', NAME, '--wait=false']), 'delete');
  const returned = performance.now();
  await until('deleted', () => w.state() === 'deleted', 5000);
  const ms = performance.now() - before;
  t.ok(ms < 1000, `deleted: seen ${Math.round(ms)} ms after kubectl delete started (${Math.round(performance.now() - returned)} ms after it returned)`);
});

t.test('foreground deletion (--cascade foreground): deleting, then deleted', async (t) => {
  await removeDaemonSet();
  // A finalizer of the test's own holds the object in its deleting state until the test lets go.
  await createDaemonSet(['weft.dev/uninstall-test-hold']);
  t.teardown(removeDaemonSet);
  const { w } = watch(t, agentToken);
  await until('present', () => w.state() === 'present');
  await must(kubectl(['-n', NS, 'delete', 'daemonset', NAME, '--cascade=foreground', '--wait=false']), 'delete --cascade foreground');
  const ms = await until('deleting', () => w.state() === 'deleting', 5000);
  t.pass(`deleting: seen ${Math.round(ms)} ms after kubectl delete returned`);
  await must(kubectl(['-n', NS, 'patch', 'daemonset', NAME, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']), 'release the finalizers');
  await until('deleted', () => w.state() === 'deleted', 5000);
  t.pass('deleted once the finalizers are gone');
});

t.test('a token without the Role: unknown, with the 403, and the watch keeps trying', async (t) => {
  await removeDaemonSet();
  await createDaemonSet();
  t.teardown(removeDaemonSet);
  const { w, logs } = watch(t, strangerToken);
  await until('an error', () => w.lastError() !== undefined);
  // A few retries later, still alive and still unknown.
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(w.state(), 'unknown');
  t.match(w.lastError(), /KUBE_HTTP: list DaemonSet .*HTTP 403: .*forbidden/, String(w.lastError()));
  t.equal(logs.filter((l) => l.level === 'warn').length, 1, 'logged once, not once per retry');
  t.notMatch(JSON.stringify(logs), (await readFile(strangerToken, 'utf8')).trim().slice(-20), 'the token is never logged');
});

/** A TCP relay to the API server that the test can cut. TLS goes through it end to end. */
class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #open = true;
  connections = 0;

  constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((client) => {
      this.#sockets.add(client);
      client.on('close', () => this.#sockets.delete(client));
      client.on('error', () => {});
      if (!this.#open) return void client.resetAndDestroy();
      this.connections++;
      const upstream = net.connect(target);
      this.#sockets.add(upstream);
      upstream.on('close', () => this.#sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
  }

  async listen(): Promise<string> {
    // The API server's certificate names 127.0.0.1.
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return `https://127.0.0.1:${(this.#server.address() as net.AddressInfo).port}`;
  }

  /** Resets every open connection (TCP RST both ways). */
  reset(): void {
    for (const s of this.#sockets) s.resetAndDestroy();
  }

  /** Closed: every connection is reset, new ones too, until it is opened again. */
  setOpen(open: boolean): void {
    this.#open = open;
    if (!open) this.reset();
  }

  close(): void {
    this.setOpen(false);
    this.#server.close();
  }
}

t.test('the watch outlives ended watches and dropped connections, and a relist sees a deletion it missed', async (t) => {
  await removeDaemonSet();
  await createDaemonSet();
  t.teardown(removeDaemonSet);
  const relay = new Relay({ host: apiServer.hostname, port: Number(apiServer.port) });
  const server = await relay.listen();
  t.teardown(() => relay.close());
  // The API server ends each watch after 2 s: the watch resumes from where it was.
  const { w, logs } = watch(t, agentToken, { server, watchSeconds: 2 });
  await until('present', () => w.state() === 'present');
  const before = relay.connections;
  await new Promise((r) => setTimeout(r, 6000));
  t.ok(relay.connections - before >= 2, `watches the API server ended were resumed (${relay.connections - before} new connections in 6 s)`);
  t.equal(w.state(), 'present');
  t.notOk(logs.some((l) => l.level === 'warn'), 'a watch the server ends is not a failure');

  relay.reset();
  await until('a warning about the broken stream', () => logs.some((l) => l.level === 'warn' && /KUBE_UNREACHABLE/.test(String(l.fields.error))));
  await until('watching again', () => w.snapshot().watching);
  t.pass('a reset connection: logged, then watching again');
  t.equal(w.state(), 'present');

  // Cut off, the watch cannot see the deletion: the known state stands...
  relay.setOpen(false);
  await must(kubectl(['-n', NS, 'delete', 'daemonset', NAME, '--wait=true']), 'delete while cut off');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(w.state(), 'present', 'cut off: still the last known state, never a guess');
  t.ok(w.lastError(), `with the reason: ${w.lastError()}`);
  // ...until the relist after reconnecting no longer finds it.
  relay.setOpen(true);
  const ms = await until('deleted', () => w.state() === 'deleted');
  t.pass(`reconnected: the relist finds no DaemonSet, deleted (${Math.round(ms)} ms)`);
});

// ---------------------------------------------------------------------------------------------
// One real agent process, in the node's network namespace, with CNI directories of its own.

interface AgentRun {
  output: () => string;
  exited: Promise<number | null>;
  stop: () => void;
}

function runAgent(t: Test, d: { state: string; bin: string; conf: string; binary: string }): AgentRun {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, join(REPO, 'agent/main.ts')], {
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      NODE_NAME: 'node-1',
      // No controller: the agent starts all the same and keeps retrying.
      WEFT_CONTROLLER: 'https://127.0.0.1:1',
      WEFT_CA_FILE: caFile,
      WEFT_TOKEN_FILE: agentToken,
      WEFT_STATE_DIR: d.state,
      WEFT_CNI_BINARY: d.binary,
      WEFT_CNI_BIN_DIR: d.bin,
      WEFT_CNI_CONF_DIR: d.conf,
      WEFT_DRAIN_SECONDS: '5',
      // As the chart configures it; the API server as the kubelet announces it.
      WEFT_DAEMONSET: NAME,
      WEFT_NAMESPACE: NS,
      WEFT_KUBE_CA_FILE: caFile,
      KUBERNETES_SERVICE_HOST: apiServer.hostname,
      KUBERNETES_SERVICE_PORT: apiServer.port,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  return { output: () => out, exited, stop: () => void child.kill('SIGTERM') };
}

async function nodeDump(): Promise<{ daemonSet?: { state?: string } | null } | undefined> {
  const r = await sh('ip', ['netns', 'exec', netns, 'curl', '-sf', '-m', '2', 'http://127.0.0.1:15000/node']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { daemonSet?: { state?: string } | null }) : undefined;
}

const weftTable = async (): Promise<boolean> => (await sh('ip', ['netns', 'exec', netns, 'nft', 'list', 'table', 'inet', 'weft'])).code === 0;

t.test('SIGTERM: DaemonSet present, everything stays; DaemonSet deleted, Weft leaves the node', async (t) => {
  await removeDaemonSet();
  const d = { state: join(dir, 'state'), bin: join(dir, 'cni-bin'), conf: join(dir, 'net.d'), binary: join(dir, 'weft-cni') };
  for (const p of [d.state, d.bin, d.conf]) await mkdir(p, { recursive: true });
  await copyFile(join(REPO, 'dist/weft-cni'), d.binary);
  const primary = `${JSON.stringify({ cniVersion: '1.0.0', name: 'kindnet', plugins: [{ type: 'ptp', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } }, { type: 'portmap', capabilities: { portMappings: true } }] }, null, 2)}\n`;
  const conflist = join(d.conf, '10-kindnet.conflist');
  await writeFile(conflist, primary);
  const installed = join(d.bin, 'weft-cni');
  // Stand-ins for the node's checkpoints (no controller here writes real ones; the agent ignores
  // a checkpoint it cannot parse): the keep path must leave them, the uninstall path remove them.
  const checkpoints = ['state.json', 'enrolled.json'].map((f) => join(d.state, f));
  for (const f of checkpoints) await writeFile(f, f.endsWith('enrolled.json') ? '[]\n' : '{}\n');
  t.teardown(async () => {
    await sh('ip', ['netns', 'exec', netns, 'nft', 'delete', 'table', 'inet', 'weft']);
    await removeDaemonSet();
  });
  await createDaemonSet();

  const started = async (run: AgentRun): Promise<void> => {
    await until('the agent to start and see its DaemonSet', async () => (await nodeDump())?.daemonSet?.state === 'present', 30_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${run.output()}`);
    });
    t.ok(await weftTable(), 'running: the `inet weft` table is in place');
    t.ok(existsSync(installed), 'running: weft-cni is installed');
    t.not(await readFile(conflist, 'utf8'), primary, 'running: weft-cni is chained into the conflist');
  };

  // 1. The DaemonSet is there: a restart, a node drain, a deleted pod. Fail closed.
  const first = runAgent(t, d);
  await started(first);
  first.stop();
  t.equal(await first.exited, 0, 'SIGTERM: exits 0');
  t.ok(await weftTable(), 'DaemonSet present: the table stays');
  t.ok(existsSync(installed), 'DaemonSet present: the binary stays');
  t.match(JSON.parse(await readFile(conflist, 'utf8')), { plugins: [{ type: 'ptp' }, { type: 'portmap' }, { type: 'weft-cni' }] }, 'DaemonSet present: still chained');
  t.ok(checkpoints.every((f) => existsSync(f)), 'DaemonSet present: the checkpoints stay');
  t.match(first.output(), /"leaving the node meshed".*"DaemonSet [^"]+ is still there"/, 'and says why in its log');

  // 2. helm uninstall: the DaemonSet is deleted, then the agent is stopped.
  const second = runAgent(t, d);
  await started(second);
  await must(kubectl(['-n', NS, 'delete', 'daemonset', NAME, '--wait=false']), 'delete the DaemonSet');
  await until('the agent to see the deletion', async () => (await nodeDump())?.daemonSet?.state === 'deleted', 5000);
  t.pass('the admin dump shows /node daemonSet.state deleted');
  second.stop();
  t.equal(await second.exited, 0, 'SIGTERM: exits 0');
  t.match(second.output(), /"uninstalled: Weft is off this node".*"errors":\[\]/, 'and logs what it removed, without errors');
  t.equal(await readFile(conflist, 'utf8'), primary, 'DaemonSet deleted: the conflist has its exact former bytes');
  t.equal(await readFile(installed, 'utf8'), UNINSTALLED_STUB, 'DaemonSet deleted: weft-cni is replaced by the stub that only tears down');
  t.notOk(await weftTable(), 'DaemonSet deleted: the `inet weft` table is removed');
  for (const f of checkpoints) t.notOk(existsSync(f), `DaemonSet deleted: no ${f.slice(d.state.length + 1)} left for a later install to restore`);
});
