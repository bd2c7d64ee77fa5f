// `weft dev up`: brings a playground cluster up and supervises it until it is told to stop.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planPlayground, RUN_ROOT, type KubeletConfig, type NodePlan, type PlaygroundPlan } from './config.ts';
import {
  apiGet,
  startApiServer,
  startControllerManager,
  startEtcd,
  startKubeProxy,
  startScheduler,
  GiveUp,
  waitFor,
  writeKubeconfig,
  writePki,
  type ClientCreds,
} from './controlplane.ts';
import { createNetwork, destroyNetwork } from './net.ts';
import { createClusterPki } from './pki.ts';
import { claimSlot, isAlive, readState, writeState, type PlaygroundState } from './state.ts';
import { Supervisor } from './supervisor.ts';
import { teardown } from './down.ts';
import { assignPodCIDR, cleanRealNode, SANDBOX_IMAGE, startRealNode } from './real-node.ts';
import { buildImage, busyboxImage, pauseImage, testImage } from './images.ts';
import { clusterDNSIP, corednsImage, installClusterDNS } from './cluster-dns.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface UpOptions {
  name: string;
  nodes: number;
  detach: boolean;
  /** Deploy the demo app once the cluster is ready. */
  demo: boolean;
  /** Install Weft (controller + agents); false gives a bare Kubernetes cluster. */
  mesh: boolean;
  mtlsMode: 'STRICT' | 'PERMISSIVE';
  /**
   * 'simulated': the playground's own kubelet, which runs pods' commands as processes (the
   * default while the suites run there); 'real': the kubelet and containerd, running images.
   */
  runtime?: NodeRuntime;
  /** Image tarballs (docker save format) every real node loads besides its own, e.g. a test suite's. */
  images?: string[];
}

export type NodeRuntime = 'simulated' | 'real';

const say = (msg: string) => process.stderr.write(`[weft dev] ${msg}\n`);

/**
 * Builds the Go components unless the cache already holds them for the committed pins. The build
 * script decides (it owns the list in build/components.list and the cache key); when everything is
 * cached it answers at once, otherwise it shows its progress on stderr.
 */
export function ensureComponents(binDir: string): void {
  const r = spawnSync('bash', [join(REPO_ROOT, 'playground/build/build-components.sh')], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error('building the playground components failed (see the output above)');
  if (r.stdout.trim() !== binDir) throw new Error(`the components were built into ${r.stdout.trim()}, not ${binDir}: were the pins changed while this ran?`);
}

export function checkHost(): void {
  if (process.getuid?.() !== 0) throw new Error('the playground needs root (it creates network namespaces): run it with sudo');
  for (const tool of ['ip', 'nsenter', 'nft']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} is missing: run "bash scripts/install-system-deps.sh" (installs iproute2, util-linux, nftables, CNI plugins)`);
    }
  }
  if (!existsSync('/usr/lib/cni/ptp') || !existsSync('/usr/lib/cni/host-local')) {
    throw new Error('the CNI reference plugins are missing (/usr/lib/cni/ptp): run "bash scripts/install-system-deps.sh"');
  }
}

/** Refuses to start over a live playground of the same name; cleans up a dead one. */
async function claimName(name: string): Promise<void> {
  const existing = await readState(name);
  if (existing && isAlive(existing.supervisorPid) && existing.supervisorPid !== process.pid) {
    throw new Error(
      `a playground named "${name}" is already running (supervisor pid ${existing.supervisorPid}); ` +
        `use it, stop it with "weft dev down --name ${name}", or start another beside it with "--name <other>"`,
    );
  }
  if (existing) await teardown(name);
}

async function logTail(path: string, lines = 15): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return `${text.trimEnd().split('\n').slice(-lines).join('\n')}\n(log: ${path})`;
}

function supervisorLog(name: string): string {
  return join(RUN_ROOT, `${name}.log`);
}

/** Starts the supervisor in the background and returns once the cluster is ready (or failed). */
async function upDetached(opts: UpOptions): Promise<PlaygroundState> {
  await claimName(opts.name);
  await mkdir(RUN_ROOT, { recursive: true });
  const logPath = supervisorLog(opts.name);
  await writeFile(logPath, '');
  const fd = openSync(logPath, 'a');
  const args = [join(REPO_ROOT, 'cli/weft.ts'), 'dev', 'up', '--name', opts.name, '--nodes', String(opts.nodes), '--mtls-mode', opts.mtlsMode];
  if (!opts.mesh) args.push('--no-mesh');
  args.push('--runtime', opts.runtime ?? 'simulated');
  for (const image of opts.images ?? []) args.push('--image', image);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, WEFT_DEV_FOREGROUND: '1' } });
  closeSync(fd);
  child.unref();
  const pid = child.pid ?? -1;
  // A child that exited stays a zombie until reaped, and kill(pid, 0) succeeds on a zombie: its
  // 'exit' event is what tells us, at once, that the supervisor is gone.
  let exit: string | undefined;
  child.on('exit', (code, signal) => (exit = signal ? `signal ${signal}` : `code ${code}`));
  let state: PlaygroundState | undefined;
  await waitFor(`playground "${opts.name}" to become ready (log: ${logPath})`, 300_000, async () => {
    state = await readState(opts.name);
    if (state?.supervisorPid === pid && (state.phase === 'ready' || state.phase === 'failed')) return true;
    if (exit !== undefined || !isAlive(pid)) throw new GiveUp(`the supervisor exited (${exit ?? 'gone'}): ${await logTail(logPath)}`);
    return false;
  });
  if (!state || state.phase === 'failed') throw new Error(`the playground failed to start: ${state?.error ?? 'unknown'} (log: ${logPath})`);
  return state;
}

export async function up(opts: UpOptions): Promise<PlaygroundState | undefined> {
  checkHost();
  if (opts.detach && !process.env.WEFT_DEV_FOREGROUND) {
    ensureComponents(planPlayground(opts.name, 0, opts.nodes).binDir);
    return upDetached(opts);
  }
  await runForeground(opts);
  return undefined;
}

async function runForeground(opts: UpOptions): Promise<void> {
  const t0 = Date.now();
  await claimName(opts.name);
  ensureComponents(planPlayground(opts.name, 0, opts.nodes).binDir);
  await rm(join(RUN_ROOT, opts.name), { recursive: true, force: true });
  let state!: PlaygroundState;
  await claimSlot(opts.name, async (slot) => {
    const plan = planPlayground(opts.name, slot, opts.nodes);
    state = {
      name: plan.name,
      slot,
      phase: 'starting',
      supervisorPid: process.pid,
      startedAt: new Date().toISOString(),
      pids: {},
      plan,
      repo: REPO_ROOT,
    };
    await writeState(state);
  });
  const plan = state.plan;
  const real = opts.runtime === 'real';
  state.runtime = opts.runtime ?? 'simulated';
  for (const d of [plan.dir, plan.paths.logs]) await mkdir(d, { recursive: true });
  await mkdir(plan.paths.etcdData, { recursive: true, mode: 0o700 });
  for (const n of plan.nodes) {
    await mkdir(n.cniConfDir, { recursive: true });
    await mkdir(n.cniBinDir, { recursive: true });
  }
  await writeState(state);

  let persisting = Promise.resolve();
  const persist = () => {
    state.pids = sup.pids();
    persisting = persisting.then(() => writeState(state)).catch(() => {});
  };
  const sup = new Supervisor((e) => {
    if (e.kind === 'exited') say(`${e.name} exited (code ${e.code}, signal ${e.signal}); restarting in ${e.restartInMs} ms`);
    persist();
  });

  let stopping: Promise<void> | undefined;
  let stopMesh = () => {};
  const stop = (why: string) => {
    stopping ??= (async () => {
      say(`stopping (${why})`);
      stopMesh();
      state.phase = 'stopping';
      persist();
      await sup.stopAll(10_000);
      if (real) for (const n of plan.nodes) await cleanRealNode(plan, n);
      await destroyNetwork(plan);
      await rm(plan.dir, { recursive: true, force: true });
      say('stopped; nothing left behind');
    })();
    return stopping;
  };
  process.on('SIGINT', () => void stop('SIGINT').then(() => process.exit(0)));
  process.on('SIGTERM', () => void stop('SIGTERM').then(() => process.exit(0)));

  try {
    // Images build (or come from the cache) while the control plane starts.
    const nodeImages = real ? buildNodeImages(plan, opts.mesh).then((built) => [...built, ...(opts.images ?? [])]) : Promise.resolve([]);
    nodeImages.catch(() => {});
    const [, pki] = await Promise.all([
      createNetwork(plan),
      createClusterPki({ hostIP: plan.hostIP, apiServiceIP: plan.apiServiceIP, nodeNames: plan.nodes.map((n) => n.name) }),
    ]);
    const files = await writePki(plan, pki);
    const kc = (file: string) => join(plan.paths.pki, file);
    await writeKubeconfig(plan, pki, plan.paths.adminKubeconfig, 'admin', pki.admin);
    const kcmKc = await writeKubeconfig(plan, pki, kc('controller-manager.kubeconfig'), 'system:kube-controller-manager', pki.controllerManager);
    const schedKc = await writeKubeconfig(plan, pki, kc('scheduler.kubeconfig'), 'system:kube-scheduler', pki.scheduler);
    const proxyKc = await writeKubeconfig(plan, pki, kc('kube-proxy.kubeconfig'), 'system:kube-proxy', pki.kubeProxy);
    const admin: ClientCreds = { caPem: pki.caPem, certPem: pki.admin.certPem, keyPem: pki.admin.keyPem };

    startEtcd(plan, sup);
    await waitFor('etcd', 30_000, async () => {
      const r = await fetch(`http://127.0.0.1:${plan.etcdClientPort}/health`);
      return r.ok || `status ${r.status}`;
    });
    startApiServer(plan, files, sup);
    await waitFor('kube-apiserver /readyz', 90_000, async () => {
      const r = await apiGet(plan, admin, '/readyz');
      return r.status === 200 || `status ${r.status}`;
    });
    startControllerManager(plan, files, kcmKc, sup);
    startScheduler(plan, schedKc, sup);
    const images = await nodeImages;
    if (real) await raiseInotifyInstances();
    await Promise.all(
      plan.nodes.map(async (n) => {
        await writeCniConfig(n);
        await startKubeProxy(plan, n, proxyKc, sup);
        const cred = pki.nodes[n.name];
        if (!cred) throw new Error(`no kubelet certificate for ${n.name}`);
        const kubeletKc = await writeKubeconfig(plan, pki, kc(`kubelet-${n.name}.kubeconfig`), `system:node:${n.name}`, cred);
        if (real) {
          await startRealNode(plan, n, { ca: files.ca, kubeconfig: kubeletKc, clusterDNS: clusterDNSIP(plan) }, images, sup);
          await assignPodCIDR(plan, n);
        } else await startKubelet(plan, n, kubeletKc, sup);
      }),
    );
    say(`nodes started after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await waitUntilReady(plan, admin);
    say(`nodes Ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (real) {
      // Side by side: the agents retry the controller's name until CoreDNS answers.
      const { installMeshOnRealNodes } = await import('./mesh.ts');
      const t1 = Date.now();
      await Promise.all([
        installClusterDNS(plan).then(() => say(`CoreDNS ready after ${((Date.now() - t1) / 1000).toFixed(1)} s`)),
        opts.mesh ? installMeshOnRealNodes(plan, REPO_ROOT, { mtlsMode: opts.mtlsMode, log: say }).then(() => say(`Weft ready after ${((Date.now() - t1) / 1000).toFixed(1)} s`)) : undefined,
      ]);
    } else if (opts.mesh) {
      const { installMesh } = await import('./mesh.ts');
      await installMesh(plan, sup, REPO_ROOT, { mtlsMode: opts.mtlsMode, log: say, onRunner: (r) => (stopMesh = () => r.stop()) });
    }
    state.mesh = opts.mesh;
    state.phase = 'ready';
    state.readyAt = new Date().toISOString();
    state.upSeconds = Math.round((Date.now() - t0) / 100) / 10;
    persist();
    await persisting;
    say(`ready in ${state.upSeconds} s: ${plan.nodes.length} nodes; kubeconfig ${plan.paths.adminKubeconfig}`);
    if (opts.demo) {
      const { deployDemo } = await import('./demo.ts');
      await deployDemo(plan, state.runtime);
    }
  } catch (e) {
    state.phase = 'failed';
    state.error = e instanceof Error ? e.message : String(e);
    persist();
    await persisting;
    say(`failed: ${state.error}`);
    await stop('start-up failed');
    process.exitCode = 1;
    return;
  }
  // Stay up until signalled.
  await new Promise<never>(() => {});
}

/**
 * The images every real node starts with: the sandbox image, the demo's busybox, the suites'
 * workload image, and Weft's agent and controller (from images/*.Dockerfile) when Weft is to be
 * installed.
 */
async function buildNodeImages(p: PlaygroundPlan, mesh: boolean): Promise<string[]> {
  const images = [
    buildImage(pauseImage(p.binDir, SANDBOX_IMAGE)),
    busyboxImage().then(buildImage),
    testImage(p.binDir, process.execPath).then(buildImage),
    buildImage(corednsImage(p.binDir)),
  ];
  if (mesh) {
    const { weftImageRefs } = await import('./mesh.ts');
    const { buildWeftImage } = await import('./weft-images.ts');
    const refs = await weftImageRefs(REPO_ROOT);
    images.push(buildWeftImage(REPO_ROOT, 'agent', refs.agent), buildWeftImage(REPO_ROOT, 'controller', refs.controller));
  }
  return Promise.all(images);
}

/**
 * Each real node's kubelet, containerd and Weft agent hold inotify instances (a 2-node playground
 * ~28), and the kernel's default of 128 per user is shared by every root process on the machine:
 * with two or three real playgrounds up, the next kubelet exits at start ("too many open files")
 * and its Node never registers. Raised, never lowered, as cluster-in-a-container tools also ask
 * their users to do.
 */
async function raiseInotifyInstances(want = 1024): Promise<void> {
  const path = '/proc/sys/fs/inotify/max_user_instances';
  const now = Number((await readFile(path, 'utf8').catch(() => '0')).trim());
  if (now >= want) return;
  try {
    await writeFile(path, `${want}\n`);
    say(`raised fs.inotify.max_user_instances from ${now} to ${want} (kubelets and containerd need many)`);
  } catch (e) {
    say(`fs.inotify.max_user_instances is ${now} and cannot be raised (${(e as Error).message}): with other playgrounds up, a kubelet may fail to start`);
  }
}

/** The node's primary CNI configuration, as a node's container runtime would find it. */
async function writeCniConfig(n: NodePlan): Promise<void> {
  const conflist = {
    cniVersion: '1.0.0',
    name: 'playground',
    plugins: [
      {
        type: 'ptp',
        mtu: 1500,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: n.podCIDR }]],
          routes: [{ dst: '0.0.0.0/0' }],
          // host-local keeps its leases on disk: each simulated node needs its own directory.
          dataDir: join(n.dir, 'ipam'),
        },
      },
    ],
  };
  await writeFile(join(n.cniConfDir, '10-playground.conflist'), JSON.stringify(conflist, null, 2));
}

async function startKubelet(p: PlaygroundPlan, n: NodePlan, kubeconfigPath: string, sup: Supervisor): Promise<void> {
  const cfg: KubeletConfig = {
    playground: p.name,
    node: n,
    kubeconfig: kubeconfigPath,
    hostIP: p.hostIP,
    clusterCIDR: p.clusterCIDR,
    serviceCIDR: p.serviceCIDR,
  };
  const path = join(n.dir, 'kubelet.json');
  await writeFile(path, JSON.stringify(cfg, null, 2));
  sup.start({
    name: `kubelet/${n.name}`,
    netns: n.netns,
    cmd: process.execPath,
    args: [join(REPO_ROOT, 'playground/kubelet/main.ts'), path],
    logFile: join(n.dir, 'kubelet.log'),
  });
}

interface NodeList {
  items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
}

async function waitUntilReady(p: PlaygroundPlan, admin: ClientCreds): Promise<void> {
  await waitFor(`${p.nodes.length} Ready nodes`, 60_000, async () => {
    const r = await apiGet(p, admin, '/api/v1/nodes');
    if (r.status !== 200) return `status ${r.status}`;
    const nodes = (JSON.parse(r.body) as NodeList).items;
    const ready = nodes.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    return ready.length === p.nodes.length || `${ready.length}/${p.nodes.length} nodes Ready`;
  });
  // Pods are refused until the service-account controller has created the namespace's default account.
  await waitFor('the default ServiceAccount', 60_000, async () => {
    const r = await apiGet(p, admin, '/api/v1/namespaces/default/serviceaccounts/default');
    return r.status === 200 || `status ${r.status}`;
  });
}
