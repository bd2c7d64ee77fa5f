// The controller assembled: watches → reconciler → store → agent API, plus the CA, the serving
// certificate and the health endpoints. main.ts adds the process around it (flags, signals);
// tests start it in-process against a real API server.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { spiffeId } from '../api/agent-sync.ts';
import { MeshCa } from './ca/ca.ts';
import { createRoot, loadRoot } from './ca/root.ts';
import type { CaRoot } from './ca/root.ts';
import type { ControllerConfig } from './config.ts';
import { createHealthServer } from './health-server.ts';
import type { HealthServer } from './health-server.ts';
import { createClusterWatches } from './kube/cluster-watches.ts';
import type { ClusterWatches } from './kube/cluster-watches.ts';
import { kubeTokenReviewer } from './kube/token-review.ts';
import type { Logger } from '../api/log.ts';
import { createControllerMetrics } from './metrics.ts';
import type { ControllerMetrics } from './metrics.ts';
import { AgentAuthenticator } from './server/agent-auth.ts';
import { ReviewGate } from './server/review-gate.ts';
import { SourceLimiter } from './server/source-limiter.ts';
import { AgentRegistry } from './server/agent-registry.ts';
import { createAgentServer } from './server/agent-server.ts';
import type { AgentServer } from './server/agent-server.ts';
import { meshCaSigner } from './server/signer.ts';
import { createLeaderElector } from './kube/leader.ts';
import type { LeaderElector } from './kube/leader.ts';
import { PolicyReconciler } from './policy/reconciler.ts';
import { PolicyStatusWriter } from './policy/status-writer.ts';
import { RouteController } from './route/controller.ts';
import { MeshStateReconciler } from './state/reconciler.ts';
import { RevisionedStore } from './state/store.ts';
import { controllerHostnames, issueServingCert } from './tls/serving-cert.ts';

export interface RunningController {
  readonly store: RevisionedStore;
  readonly registry: AgentRegistry;
  readonly watches: ClusterWatches;
  readonly policies: PolicyReconciler;
  readonly leader: LeaderElector;
  readonly metrics: ControllerMetrics;
  readonly agentAddress: AddressInfo;
  readonly healthAddress: AddressInfo;
  /** The mesh root certificate agents must trust. */
  readonly trustBundlePem: string;
  /** Resolves once the caches synced and the store holds their state. */
  readonly whenReady: Promise<void>;
  /** Graceful: not ready, streams ended with SHUTTING_DOWN, listeners closed, watches stopped. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  /** Instead of cfg.kubeconfig / in-cluster / default. */
  kubeConfig?: KubeConfig;
  /** Export process metrics too (off in tests that start several controllers in one process). */
  processMetrics?: boolean;
}

export async function startController(cfg: ControllerConfig, opts: StartOptions): Promise<RunningController> {
  const { log } = opts;
  const kubeConfig = opts.kubeConfig ?? loadKubeConfig(cfg.kubeconfig);
  const root = await loadCaRoot(cfg, log);
  if (cfg.trustBundleOut) await writeAtomically(cfg.trustBundleOut, root.certificatePem);

  const store = new RevisionedStore({ config: { trustDomain: cfg.trustDomain, mtlsMode: cfg.mtlsMode }, installNamespace: cfg.installNamespace });
  const registry = new AgentRegistry();
  const limits = cfg.agentApiLimits;
  const reviewGate = new ReviewGate({ concurrency: limits.reviewConcurrency, queue: limits.reviewQueue });
  const sourceLimiter = new SourceLimiter({
    reviewRatePerSecond: limits.sourceReviewRate,
    reviewBurst: limits.sourceReviewBurst,
    pendingReviewsPerSource: limits.sourcePendingReviews,
    connectionsPerSource: limits.sourceConnections,
  });
  // onRestart only fires after start(), by which time `metrics` exists.
  const watches = createClusterWatches(kubeConfig, { log, onRestart: (resource) => metrics.watchRestarts.inc({ resource }) });
  const metrics: ControllerMetrics = createControllerMetrics(
    {
      connectedAgents: () => registry.connectedCount(),
      storeRevision: () => store.revision,
      storeResources: () => store.size,
      tokenReviewsInFlight: () => reviewGate.inFlight,
      tokenReviewsQueued: () => reviewGate.queued,
      watchesSynced: () => Object.fromEntries(watches.all().map((w) => [w.resource, w.synced()])),
    },
    { processMetrics: opts.processMetrics ?? false },
  );
  const policies = new PolicyReconciler({ sources: watches, store, installNamespace: cfg.installNamespace, trustDomain: cfg.trustDomain, log });
  const reconciler = new MeshStateReconciler({ sources: watches, store, trustDomain: cfg.trustDomain, log, others: [policies] });
  // Every replica serves agents; only the Lease holder writes policy status and Events.
  const leader = createLeaderElector({ kubeConfig, namespace: cfg.installNamespace, name: 'weft-controller', identity: cfg.identity, log });
  // Routes ride in the policies' programmed reports, so that the leader counts their nodes too.
  let routeReport: () => Record<string, { generation: number; nodes: number[] }> = () => ({});
  let routesRemoteChanged = (): void => {};
  const statusWriter = new PolicyStatusWriter({
    kubeConfig,
    sources: watches,
    store,
    registry,
    reconciler: policies,
    leader,
    installNamespace: cfg.installNamespace,
    identity: cfg.identity,
    log,
    extraReport: () => routeReport(),
    onRemoteChange: () => routesRemoteChanged(),
  });

  const authenticator = new AgentAuthenticator({
    reviewer: kubeTokenReviewer(kubeConfig, { audiences: cfg.tokenAudiences }),
    serviceAccount: cfg.agentServiceAccount,
    ttlMs: limits.tokenCacheTtlSeconds * 1000,
    limiter: sourceLimiter,
    gate: reviewGate,
  });
  authenticator.onReview = (outcome) => metrics.tokenReviews.inc({ outcome });
  authenticator.onCache = (result) => metrics.tokenCache.inc({ result });
  authenticator.onLimited = (reason) => metrics.agentApiLimited.inc({ reason });

  const servingId = spiffeId(cfg.trustDomain, cfg.installNamespace, 'weft-controller');
  const servingHosts = [...controllerHostnames(cfg.installNamespace), ...cfg.servingHosts];
  const serving = await issueServingCert(root, { spiffeId: servingId, hosts: servingHosts });

  const agentServer: AgentServer = createAgentServer({
    ...(cfg.agentListen.host ? { host: cfg.agentListen.host } : {}),
    port: cfg.agentListen.port,
    tls: { cert: serving.certPem, key: serving.keyPem },
    store,
    registry,
    authenticator,
    limiter: sourceLimiter,
    pods: watches.pods,
    signer: meshCaSigner(new MeshCa(root, { ttlMs: cfg.workloadCertTtlSeconds * 1000 })),
    trustDomain: cfg.trustDomain,
    ready: () => reconciler.ready(),
    metrics,
    log,
  });

  const health: HealthServer = createHealthServer({
    ...(cfg.healthListen.host ? { host: cfg.healthListen.host } : {}),
    port: cfg.healthListen.port,
    notReady: () => [
      ...watches.all().filter((w) => !w.synced()).map((w) => `watch of ${w.resource} has not synced`),
      ...(watches.synced() && !reconciler.ready() ? ['mesh state not computed yet'] : []),
    ],
    metrics: metrics.registry,
    agents: () => registry.list(),
    log,
  });

  const agentAddress = await agentServer.listen();
  let healthAddress: AddressInfo;
  try {
    healthAddress = await health.listen();
  } catch (err) {
    await agentServer.close(0);
    throw err;
  }
  watches.start();
  const routes = new RouteController({ kubeConfig, store, leader, log, registry, remote: () => statusWriter.remote() });
  routeReport = () => routes.localReport();
  routesRemoteChanged = () => routes.recount();
  void reconciler.whenReady.then(() => {
    routes.start();
    statusWriter.start();
    leader.start();
  });

  // Renew the serving certificate at half its life; open connections keep the old one.
  let renewTimer: NodeJS.Timeout | undefined;
  const scheduleRenewal = (notBefore: Date, notAfter: Date): void => {
    const halfLife = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2 - Date.now();
    renewTimer = setTimeout(() => {
      issueServingCert(root, { spiffeId: servingId, hosts: servingHosts })
        .then((next) => {
          agentServer.setTls({ cert: next.certPem, key: next.keyPem });
          log.info('serving certificate renewed', { notAfter: next.notAfter.toISOString() });
          scheduleRenewal(next.notBefore, next.notAfter);
        })
        .catch((err: unknown) => {
          log.error('serving certificate renewal failed; retrying in a minute', { error: err });
          renewTimer = setTimeout(() => scheduleRenewal(notBefore, notAfter), 60_000);
          renewTimer.unref();
        });
    }, Math.max(1_000, halfLife));
    renewTimer.unref();
  };
  scheduleRenewal(serving.notBefore, serving.notAfter);

  log.info('controller started', {
    trustDomain: cfg.trustDomain,
    mtlsMode: cfg.mtlsMode,
    epoch: store.epoch,
    agentPort: agentAddress.port,
    healthPort: healthAddress.port,
    servingIdentity: servingId,
  });

  let stopping: Promise<void> | undefined;
  return {
    store,
    registry,
    watches,
    policies,
    leader,
    metrics,
    agentAddress,
    healthAddress,
    trustBundlePem: root.certificatePem,
    whenReady: reconciler.whenReady,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        health.drain();
        clearTimeout(renewTimer);
        await agentServer.close(graceMs);
        await statusWriter.stop();
        await routes.stop();
        await leader.stop();
        reconciler.stop();
        policies.stop();
        await watches.stop();
        store.close();
        await health.close();
        log.info('controller stopped');
      })();
      return stopping;
    },
  };
}

export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

async function loadCaRoot(cfg: ControllerConfig, log: Logger): Promise<CaRoot> {
  if (cfg.caCertFile && cfg.caKeyFile) {
    const [certificatePem, keyPem] = await Promise.all([readFile(cfg.caCertFile, 'utf8'), readFile(cfg.caKeyFile, 'utf8')]);
    const root = await loadRoot({ certificatePem, keyPem, trustDomain: cfg.trustDomain });
    log.info('mesh CA loaded', { certificate: cfg.caCertFile, notAfter: root.certificate.notAfter.toISOString() });
    return root;
  }
  const { root } = await createRoot({ trustDomain: cfg.trustDomain });
  log.warn('mesh CA generated for this process only (--dev-ca): certificates will not survive a restart');
  return root;
}

async function writeAtomically(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, path);
}
