// The simulated kubelet of one playground node. The supervisor starts it inside the node's network
// namespace with a KubeletConfig (playground/config.ts) as its only argument:
//
//   nsenter --net=/run/netns/<node netns> node playground/kubelet/main.ts <kubelet.json>
//
// It registers the Node, keeps its Lease and status fresh, and runs the pods bound to it. On SIGTERM
// or SIGINT it stops every pod and releases its network (the playground is going down), leaves the
// Node in the API, and exits 0. If it dies any other way, the next run adopts what is still running.
import { readFile } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { readVersions, type KubeletConfig } from '../config.ts';
import { firstServiceIP } from './env.ts';
import { KubeletError, errorMessage } from './errors.ts';
import { EventRecorder } from './events.ts';
import { loadClients, podApi } from './kube-api.ts';
import { LeaseRenewer } from './lease.ts';
import { createLogger, type Logger } from '../../api/log.ts';
import { NodeRegistration } from './node-registration.ts';
import { nodeIdentity } from './node-status.ts';
import { PodManager } from './pod-manager.ts';
import { PodStateStore } from './pod-state-store.ts';

/** Upper bound on each pod's grace period at shutdown: the supervisor SIGKILLs us after 10 s. */
const SHUTDOWN_GRACE_MS = 5000;

export async function loadConfig(path: string): Promise<KubeletConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new KubeletError('CONFIG_INVALID', `cannot read kubelet config ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const c = raw as Partial<KubeletConfig>;
  const n = c.node;
  if (!c.playground || !c.kubeconfig || !c.serviceCIDR || !n?.name || !n.ip || !n.podCIDR || !n.dir || !n.cniConfDir || !n.cniBinDir) {
    throw new KubeletError('CONFIG_INVALID', `${path} is not a KubeletConfig (playground, kubeconfig, serviceCIDR and node are required)`);
  }
  return c as KubeletConfig;
}

/**
 * Starts the kubelet. `onStoppable` receives the stop function as soon as there is something to
 * stop (before the first pod can start), so that a signal during start-up cleans up too.
 */
export async function runKubelet(cfg: KubeletConfig, log: Logger, onStoppable: (stop: () => Promise<void>) => void): Promise<void> {
  const clients = loadClients(cfg.kubeconfig);
  const version = readVersions().K8S_VERSION ?? 'v0.0.0-unknown';
  const identity = nodeIdentity(cfg, version);
  const registration = new NodeRegistration({ core: clients.core, identity, cniConfDir: cfg.node.cniConfDir, log });
  const node = await registration.register();
  registration.start();

  const lease = new LeaseRenewer({
    coordination: clients.coordination,
    nodeName: cfg.node.name,
    nodeUID: node.metadata?.uid ?? '',
    log,
  });
  lease.start();

  const store = new PodStateStore(cfg.node.dir);
  const pods = new PodManager({
    kc: clients.kc,
    core: clients.core,
    log,
    worker: {
      playground: cfg.playground,
      nodeName: cfg.node.name,
      nodeIP: cfg.node.ip,
      apiServiceIP: firstServiceIP(cfg.serviceCIDR),
      nodeCPU: availableParallelism(),
      nodeMemory: totalmem(),
      store,
      sandbox: {
        store,
        cniConfDir: cfg.node.cniConfDir,
        chain: { binDirs: [cfg.node.cniBinDir, '/usr/lib/cni'] },
        nodeIP: cfg.node.ip,
        log,
      },
      api: podApi(clients.core),
      events: new EventRecorder(clients.core, cfg.node.name, log),
      log,
    },
  });
  onStoppable(async () => {
    lease.stop();
    registration.stop();
    await pods.shutdown(SHUTDOWN_GRACE_MS);
  });
  await pods.start();
  log.info('kubelet running', { version, podCIDR: cfg.node.podCIDR });
}

async function main(): Promise<void> {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: main.ts <kubelet-config.json>');
    process.exit(2);
  }
  const cfg = await loadConfig(path);
  const log = createLogger({ component: 'kubelet', node: cfg.node.name }, { level: process.env.WEFT_KUBELET_DEBUG ? 'debug' : 'info' });
  let stop: (() => Promise<void>) | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down: stopping pods and releasing their networks', { signal });
    void (async () => {
      try {
        // Before any pod could start there is nothing to stop (registration may be retrying).
        await stop?.();
        log.info('stopped');
        process.exit(0);
      } catch (err) {
        log.error('shutdown failed', { err });
        process.exit(1);
      }
    })();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (err) => {
    // A bug, not a condition to live with: exit, and let the supervisor's restart adopt the pods.
    log.error('unhandled rejection', { err });
    process.exit(70);
  });
  try {
    await runKubelet(cfg, log, (fn) => (stop = fn));
  } catch (err) {
    log.error('kubelet failed to start', { err });
    await stop?.().catch(() => {});
    process.exit(1);
  }
}

if (import.meta.main) await main();
