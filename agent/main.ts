// The Weft node agent: composition root — it reads the configuration (config.ts) and wires the
// parts; each part lives in its own module. Runs in the node's network namespace (hostNetwork)
// with NET_ADMIN. Configuration comes from the environment, as a DaemonSet passes it.
//
// Start order matters for fail-closed capture: listeners first, then the redirect rules (restored
// from the checkpoint in one nftables transaction), then the CNI socket and plugin install, then
// the controller connection. A restarted agent therefore captures exactly what it captured before
// as soon as it can serve it, and until then the kernel refuses the traffic: it never bypasses.
//
// Upgrades drop no established connection (the chart's DaemonSet surges, one node at a time): the
// new process starts beside the old one, re-applies the same rules (conntrack keeps the
// translation of established flows), takes the CNI and agent sockets over, and binds its
// listeners (SO_REUSEPORT) only once it is ready. Then the old one gets SIGTERM and drains: it
// stops accepting, sends GOAWAY on its tunnels, and carries what it has until it ends or
// WEFT_DRAIN_SECONDS pass. handover.ts says how the two processes find each other.
//
// A stopping agent keeps the node's rules and CNI entry (fail closed), except when Weft itself is
// being removed: with WEFT_DAEMONSET set, the agent watches its own DaemonSet (kube/), and a stop
// after that DaemonSet was deleted, with no successor on the node, takes Weft off the node
// (kube/stop-decision.ts), so that `helm uninstall` leaves every node clean.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startEndpoints } from './admin.ts';
import { AGENT_VERSION, CHECKPOINT_FILE, ENROLMENTS_FILE, configFromEnv, type AgentConfig } from './config.ts';
import { DataPlane, type DataPath } from './data-plane.ts';
import { runDataPlaneWorker } from './data-plane-worker.ts';
import { drainAndStop } from './drain.ts';
import { NodeEnroller } from './enrol/enroller.ts';
import { AGENT_SOCKET, AgentSocket, HandoverRedirector, enableRequestMigration } from './handover.ts';
import { CertificateManager } from './identity/manager.ts';
import { inClusterServer } from './kube/access.ts';
import { DaemonSetWatch } from './kube/daemonset-watch.ts';
import { log } from './log.ts';
import { stopOnSignals } from './signals.ts';
import { releaseMemory, startHeapTrimmer } from './native/trim.ts';
import { tuneV8 } from './native/v8-flags.ts';
import { certExpired, certExpiry, enrolledPods, registry, syncConnected, syncRevision } from './metrics.ts';
import { NodeCni } from './node-cni.ts';
import { preDelete } from './pre-delete.ts';
import { Readiness } from './readiness.ts';
import { ServiceCapture } from './redirect/service-capture.ts';
import { ReplicatedStore } from './replica.ts';
import { caFetcher } from './sync/ca-client.ts';
import { SyncClient } from './sync/client.ts';
import { uninstall } from './uninstall.ts';
import { someoneListens } from './unix-socket.ts';
import { DataPlaneWorkers, isDataPlaneWorkerData } from './workers.ts';

export async function runAgent(cfg: AgentConfig): Promise<(signal: string) => Promise<void>> {
  const startedAt = new Date().toISOString();
  tuneV8();
  // Traffic leaves the C heap grown; it is given back once the process goes idle. One timer for
  // the process (malloc_trim covers every thread's arenas), so here and not per worker.
  startHeapTrimmer();
  await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  // An agent still answering on the node's agent socket is our predecessor: an upgrade runs us
  // beside it (DaemonSet surge). It keeps serving until we are ready; see handover.ts.
  const agentSocketPath = join(cfg.stateDir, AGENT_SOCKET);
  const predecessor = await someoneListens(agentSocketPath);
  const migration = await enableRequestMigration();
  if (migration !== 'on') log(typeof migration === 'string' ? 'info' : 'warn', 'accept-queue migration between agent processes (net.ipv4.tcp_migrate_req)', { result: migration });

  // Opened first: the sooner it has seen the DaemonSet, the fewer stops find its state unknown.
  const ownDaemonSet = cfg.daemonSet ? new DaemonSetWatch({ ...cfg.daemonSet, log }) : undefined;

  // Replicated to the data-plane workers when there are any (replica.ts).
  const store = new ReplicatedStore();
  const checkpoint = join(cfg.stateDir, CHECKPOINT_FILE);
  if (await store.load(checkpoint)) log('info', 'restored state from checkpoint', { revision: store.revision, workloads: store.workloads().length });

  // Set once the data plane is assembled; certificates issued before are sent to workers then.
  let workers: DataPlaneWorkers | undefined;
  const certificates = new CertificateManager({
    fetch: caFetcher({ url: cfg.controllerURL, caFile: cfg.caFile, tokenFile: cfg.tokenFile }),
    onEvent: (e) => {
      if (e.type === 'issued') certExpiry.set({ identity: e.identity }, e.notAfter.getTime() / 1000);
      if (e.type === 'removed') certExpiry.remove({ identity: e.identity });
      if (e.type === 'expired') certExpired.inc();
      if (e.type !== 'fetch-failed') workers?.certificateChanged(e.identity);
      log(e.type === 'issued' || e.type === 'removed' ? 'info' : 'warn', `certificate ${e.type}`, { ...e });
    },
  });
  const readiness = new Readiness({ store, node: cfg.node, certificates });
  certificates.setIdentities(readiness.localIdentities());
  store.onChange(() => certificates.setIdentities(readiness.localIdentities()));

  const agentSocket = await AgentSocket.open(agentSocketPath, () => {
    const why = readiness.notReady();
    const decided = readiness.stopDecision;
    return { pid: process.pid, version: AGENT_VERSION, startedAt, draining: readiness.draining, ...(why === undefined ? {} : { notReady: why }), ...(decided ? { stopDecision: decided } : {}) };
  });

  const planeSettings = { node: cfg.node, installNamespace: cfg.installNamespace, idleTimeoutMs: cfg.idleTimeoutMs, l7: { limits: cfg.l7Limits, path: cfg.l7Path }, tracing: cfg.tracing, routeMirror: cfg.routeMirror };
  // The data plane on the main thread, or on worker threads that share the capture ports.
  const dataWorkers = (workers =
    cfg.dataPlaneWorkers > 0
      ? new DataPlaneWorkers({ count: cfg.dataPlaneWorkers, entry: new URL(import.meta.url), settings: planeSettings, store, certificates, identities: () => readiness.localIdentities(), log })
      : undefined);
  const dataPlane: DataPath = dataWorkers ?? new DataPlane({ ...planeSettings, store, certificates, log });
  const serve = async (): Promise<void> => {
    const slow = setTimeout(() => log('warn', 'waiting for the capture ports: a process that does not share them holds them (an agent from before SO_REUSEPORT?)'), 3000);
    await dataPlane.listen();
    clearTimeout(slow);
    readiness.serving = true;
    log('info', 'capture listeners bound', { handover: predecessor });
  };
  // Cold start: listeners first (the rules restored next redirect to them). Beside a predecessor:
  // only once ready — the kernel spreads new connections over both processes from the moment we
  // bind, and each must be served as well as the predecessor would.
  if (!predecessor) await serve();

  const redirector = new HandoverRedirector({ captureNode: cfg.captureNodeTraffic });
  if (!cfg.captureNodeTraffic) log('warn', 'node traffic is trusted: node processes and hostNetwork pods reach meshed pods past STRICT and AccessPolicy', { env: 'WEFT_CAPTURE_NODE_TRAFFIC=false' });
  // Before the enroller's first sync: the restored table then captures these Services at once.
  const serviceCapture = new ServiceCapture({ store, node: cfg.node, redirector, log });
  if (cfg.captureNodeTraffic) await serviceCapture.start();
  const enroller = new NodeEnroller({ node: cfg.node, store, redirector, stateFile: join(cfg.stateDir, ENROLMENTS_FILE), log });
  await enroller.start();
  // The newest agent process on the node answers the plugin: it takes a live socket over.
  const cni = await NodeCni.start(cfg, enroller, log);

  let saving: Promise<void> = Promise.resolve();
  const sync = new SyncClient({
    url: cfg.controllerURL,
    node: cfg.node,
    caFile: cfg.caFile,
    tokenFile: cfg.tokenFile,
    agentVersion: AGENT_VERSION,
    store,
    log,
    // Certificate fetches that failed while the controller was away go again now, not when their
    // grown backoff ends (a restarted agent must not wait seconds to serve its pods' tunnels).
    onConnected: () => void certificates.retryFailedNow(),
    onApplied: (rev) => {
      syncRevision.set(rev);
      // A draining process still follows the controller (policy changes reach the connections it
      // carries), but the checkpoint is its successor's to write.
      if (readiness.draining) return;
      saving = saving.then(() => store.save(checkpoint)).catch((e: unknown) => log('warn', 'checkpoint failed', { error: (e as Error).message }));
    },
  });
  sync.start();

  const endpoints = await startEndpoints(
    {
      // The kubelet's probe of this node's 15021 may reach this process although it asks about
      // a successor's pod: while a successor runs, the node is ready when the successor is.
      notReady: async () => {
        const successor = await agentSocket.successor();
        if (successor) return successor.notReady && `successor agent (pid ${successor.pid}): ${successor.notReady}`;
        return readiness.notReady();
      },
      releaseMemory,
      dump: {
        node: () => ({
          node: cfg.node,
          version: AGENT_VERSION,
          pid: process.pid,
          startedAt,
          draining: readiness.draining,
          controller: { connected: sync.connected, lastError: sync.lastError, epoch: store.epoch, revision: store.revision },
          daemonSet: ownDaemonSet?.snapshot() ?? null,
          captureNodeTraffic: cfg.captureNodeTraffic,
        }),
        workloads: () => store.workloads(),
        services: () => store.services(),
        routes: () => store.routes(),
        config: () => store.config,
        policies: async () => ({ revision: store.revision, access: store.accessPolicies(), mtls: store.mtlsPolicies(), openConnectionsWatched: await dataPlane.watchedConnections() }),
        enrolments: () => enroller.enrolments(),
        certificates: () => certificates.snapshot(),
        connections: () => dataPlane.openConnections(),
        tunnels: () => dataPlane.tunnels(),
      },
      ...(dataWorkers ? { metrics: () => dataWorkers.metrics(registry) } : {}),
    },
    undefined,
    cfg.bind,
  );
  const gauges = setInterval(() => {
    syncConnected.set(sync.connected ? 1 : 0);
    enrolledPods.set(enroller.enrolments().length);
  }, 1000);
  gauges.unref();

  // Beside a predecessor: take new connections once able to; the predecessor drains when told.
  if (predecessor) {
    readiness
      .untilAble(log)
      .then((able) => (able ? serve() : undefined))
      .catch((e: unknown) => log('error', 'binding the capture listeners failed', { error: (e as Error).message }));
  }

  log('info', 'agent started', { node: cfg.node, controller: cfg.controllerURL, pid: process.pid, handover: predecessor, dataPlaneWorkers: dataWorkers?.count ?? 0 });
  return (signal: string) =>
    drainAndStop(
      { cfg, readiness, redirector, serviceCapture, agentSocket, ownDaemonSet, cni, dataPlane, endpoints, sync, certificates, checkpointed: () => saving, timers: [gauges] },
      signal,
    );
}

if (!isMainThread && parentPort && isDataPlaneWorkerData(workerData)) {
  // This module is also each data-plane worker's entry (workers.ts): one file to bundle and ship.
  runDataPlaneWorker(parentPort, workerData.weftDataPlaneWorker);
} else if (import.meta.url === `file://${process.argv[1]}` && process.argv.includes('--pre-delete')) {
  // The chart's uninstall hook (pre-delete.ts): a pod of its own, with the default ServiceAccount
  // token mount of its own ServiceAccount, not a node's agent.
  const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
  await preDelete({
    access: { server: inClusterServer(process.env), caFile: `${sa}/ca.crt`, tokenFile: `${sa}/token` },
    namespace: process.env.WEFT_NAMESPACE?.trim() || 'weft-system',
    name: process.env.WEFT_DAEMONSET?.trim() || 'weft-agent',
    log,
  });
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = configFromEnv();
  if (process.argv.includes('--uninstall')) {
    const outcome = await uninstall(cfg);
    if (outcome.errors.length > 0) process.exitCode = 1;
  } else {
    stopOnSignals(runAgent(cfg), { onStartFailed: (e) => log('error', 'agent failed to start', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) }) });
  }
}
