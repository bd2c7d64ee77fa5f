// The Weft node agent: composition root. Runs in the node's network namespace (hostNetwork)
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
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientHttp2Stream } from 'node:http2';
import { DEFAULT_CNI_SETTINGS, type WeftCniSettings } from '../api/cni.ts';
import { createLogger } from '../api/log.ts';
import type { Workload } from '../api/agent-sync.ts';
import { startEndpoints } from './admin.ts';
import { AGENT_SOCKET, AgentSocket, HandoverRedirector, enableRequestMigration } from './handover.ts';
import { someoneListens } from './unix-socket.ts';
import { createCniServer } from './cni/server.ts';
import { installCniPlugin, uninstallCniPlugin, watchChain, writeApiCredentials } from './cni/install.ts';
import { NodeEnroller } from './enrol/enroller.ts';
import { HbonePool } from './hbone/pool.ts';
import { DEFAULT_L7_LIMITS, DEFAULT_PATH_OPTIONS, type L7Limits, type PathOptions } from './l7/index.ts';
import { CertificateManager } from './identity/manager.ts';
import { inClusterServer, type KubeAccess } from './kube/access.ts';
import { DaemonSetWatch } from './kube/daemonset-watch.ts';
import { decideOnStop } from './kube/stop-decision.ts';
import { certExpiry, enrolledPods, syncConnected, syncRevision } from './metrics.ts';
import { PolicyEnforcer } from './proxy/enforcer.ts';
import { InboundProxy } from './proxy/inbound.ts';
import { InboundPlaintextProxy } from './proxy/inbound-plaintext.ts';
import { OutboundProxy } from './proxy/outbound.ts';
import { ConnectionReporter } from './proxy/report.ts';
import { Redirector } from './redirect/nftables.ts';
import { ServiceCapture } from './redirect/service-capture.ts';
import { StateStore } from './state/store.ts';
import { caFetcher } from './sync/ca-client.ts';
import { SyncClient } from './sync/client.ts';

export const AGENT_VERSION = '0.1.0';

export interface AgentConfig {
  node: string;
  controllerURL: string;
  /** Service-account token bound to this node. */
  tokenFile: string;
  /** The mesh's trust bundle (signs the controller's serving certificate). */
  caFile: string;
  stateDir: string;
  cni: {
    binarySource: string;
    binDir: string;
    confDir: string;
    /** API server the plugin asks when the agent cannot answer; null: fail closed. */
    kubernetes: { apiServer: string; caFile: string; tokenFile: string } | null;
    /** The API server's CA bundle, copied for the plugin (the agent's own mount). */
    kubeCaSource: string;
  };
  /** Bind address of the metrics and health endpoints. */
  bind: string;
  /** Connections idle this long in both directions are reset. */
  idleTimeoutMs: number;
  /** How long a stopping agent carries its open connections before it resets them. */
  drainMs: number;
  /** What one inspected (L7) client connection may hold: header timeout, head size, pipelining, h2 streams. */
  l7Limits: L7Limits;
  /** How inspected request paths are normalized before policy sees them and the pod gets them. */
  l7Path: PathOptions;
  /** Weft's install namespace: AccessPolicies there are mesh-wide. */
  installNamespace: string;
  /**
   * The agent's own DaemonSet (in installNamespace), watched so that a stop after it was deleted
   * (helm uninstall) takes Weft off the node. Null (WEFT_DAEMONSET unset or empty): never.
   */
  daemonSet: { name: string; namespace: string; access: KubeAccess } | null;
  /**
   * Capture TCP that the node itself (node processes, hostNetwork pods) sends to meshed pods, so
   * that STRICT and AccessPolicy apply to it; the kubelet's probes stay exempt (redirect/rules.ts).
   * WEFT_CAPTURE_NODE_TRAFFIC=false restores "trust the node" (docs/design-decisions.md).
   */
  captureNodeTraffic: boolean;
}

/** Checkpoints in the state directory that a later install must not restore. */
const CHECKPOINT_FILE = 'state.json';
const ENROLMENTS_FILE = 'enrolled.json';

function env(name: string, fallback?: string): string {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw Object.assign(new Error(`environment variable ${name} is required`), { code: 'CONFIG' });
  return v;
}

function seconds(name: string, fallback: string): number {
  const v = Number(env(name, fallback));
  if (!Number.isFinite(v) || v < 0) throw Object.assign(new Error(`${name} must be a number of seconds, not "${process.env[name]}"`), { code: 'CONFIG' });
  return v * 1000;
}

function count(name: string, fallback: string): number {
  const v = Number(env(name, fallback));
  if (!Number.isInteger(v) || v < 1) throw Object.assign(new Error(`${name} must be a whole number above 0, not "${process.env[name]}"`), { code: 'CONFIG' });
  return v;
}

function oneOf<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const v = env(name, fallback).trim().toLowerCase();
  if (!(choices as readonly string[]).includes(v)) throw Object.assign(new Error(`${name} must be one of ${choices.join(', ')}, not "${process.env[name]}"`), { code: 'CONFIG' });
  return v as T;
}

function flag(name: string, fallback: boolean): boolean {
  const v = env(name, String(fallback)).trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw Object.assign(new Error(`${name} must be true or false, not "${process.env[name]}"`), { code: 'CONFIG' });
}

export function configFromEnv(): AgentConfig {
  const stateDir = env('WEFT_STATE_DIR', '/var/run/weft');
  const apiServer = process.env.WEFT_CNI_KUBE_API;
  const tokenFile = env('WEFT_TOKEN_FILE', '/var/run/secrets/weft/token');
  // The API server's CA bundle (the kube-root-ca.crt ConfigMap the chart projects).
  const kubeCaFile = env('WEFT_KUBE_CA_FILE', '/var/run/secrets/weft/kube-ca.crt');
  const installNamespace = env('WEFT_NAMESPACE', 'weft-system');
  const daemonSet = process.env.WEFT_DAEMONSET?.trim();
  return {
    node: env('NODE_NAME'),
    controllerURL: env('WEFT_CONTROLLER', 'https://weft-controller.weft-system.svc:15012'),
    tokenFile,
    caFile: env('WEFT_CA_FILE', '/var/run/secrets/weft/ca.crt'),
    stateDir,
    cni: {
      binarySource: env('WEFT_CNI_BINARY', '/usr/local/lib/weft/weft-cni'),
      binDir: env('WEFT_CNI_BIN_DIR', '/opt/cni/bin'),
      confDir: env('WEFT_CNI_CONF_DIR', '/etc/cni/net.d'),
      kubernetes: apiServer
        ? { apiServer, caFile: join(stateDir, 'cni-kube-ca.crt'), tokenFile: join(stateDir, 'cni-kube-token') }
        : null,
      kubeCaSource: env('WEFT_CNI_KUBE_CA_SOURCE', kubeCaFile),
    },
    bind: env('WEFT_BIND', '0.0.0.0'),
    idleTimeoutMs: Number(env('WEFT_IDLE_TIMEOUT_SECONDS', '3600')) * 1000,
    // The chart's terminationGracePeriodSeconds must exceed it (agent-daemonset.yaml).
    drainMs: seconds('WEFT_DRAIN_SECONDS', '600'),
    l7Limits: {
      headersTimeoutMs: seconds('WEFT_L7_HEADERS_TIMEOUT_SECONDS', String(DEFAULT_L7_LIMITS.headersTimeoutMs / 1000)),
      maxHeaderBytes: count('WEFT_L7_MAX_HEADER_BYTES', String(DEFAULT_L7_LIMITS.maxHeaderBytes)),
      maxPipelinedRequests: count('WEFT_L7_MAX_PIPELINED_REQUESTS', String(DEFAULT_L7_LIMITS.maxPipelinedRequests)),
      maxConcurrentStreams: count('WEFT_L7_MAX_CONCURRENT_STREAMS', String(DEFAULT_L7_LIMITS.maxConcurrentStreams)),
    },
    l7Path: {
      escapedSlashes: oneOf('WEFT_L7_PATH_ESCAPED_SLASHES', ['reject', 'decode'], DEFAULT_PATH_OPTIONS.escapedSlashes),
      pathParameters: oneOf('WEFT_L7_PATH_PARAMETERS', ['reject', 'strip', 'keep'], DEFAULT_PATH_OPTIONS.pathParameters),
      mergeSlashes: flag('WEFT_L7_PATH_MERGE_SLASHES', DEFAULT_PATH_OPTIONS.mergeSlashes),
      caseInsensitive: flag('WEFT_L7_PATH_CASE_INSENSITIVE', DEFAULT_PATH_OPTIONS.caseInsensitive),
    },
    installNamespace,
    captureNodeTraffic: flag('WEFT_CAPTURE_NODE_TRAFFIC', true),
    daemonSet: daemonSet ? { name: daemonSet, namespace: installNamespace, access: { server: inClusterServer(process.env), caFile: kubeCaFile, tokenFile } } : null,
  };
}

/** The plugin's settings, as the agent writes them into the node's CNI configuration. */
function cniSettings(cfg: AgentConfig): WeftCniSettings {
  return {
    ...DEFAULT_CNI_SETTINGS,
    excludeNamespaces: [...DEFAULT_CNI_SETTINGS.excludeNamespaces],
    agentSocket: join(cfg.stateDir, 'cni.sock'),
    logFile: join(cfg.stateDir, 'cni.log'),
    kubernetes: cfg.cni.kubernetes,
  };
}

const logger = createLogger({}, { write: (line) => void process.stdout.write(line) });
export function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  logger[level](msg, fields);
}

export async function runAgent(cfg: AgentConfig): Promise<(signal: string) => Promise<void>> {
  const startedAt = new Date().toISOString();
  await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  // An agent still answering on the node's agent socket is our predecessor: an upgrade runs us
  // beside it (DaemonSet surge). It keeps serving until we are ready; see handover.ts.
  const agentSocketPath = join(cfg.stateDir, AGENT_SOCKET);
  const predecessor = await someoneListens(agentSocketPath);
  const migration = await enableRequestMigration();
  if (migration !== 'on') log(typeof migration === 'string' ? 'info' : 'warn', 'accept-queue migration between agent processes (net.ipv4.tcp_migrate_req)', { result: migration });

  // Opened first: the sooner it has seen the DaemonSet, the fewer stops find its state unknown.
  const ownDaemonSet = cfg.daemonSet ? new DaemonSetWatch({ ...cfg.daemonSet, log }) : undefined;

  const store = new StateStore();
  const checkpoint = join(cfg.stateDir, CHECKPOINT_FILE);
  if (await store.load(checkpoint)) log('info', 'restored state from checkpoint', { revision: store.revision, workloads: store.workloads().length });

  const report = new ConnectionReporter();
  const certificates = new CertificateManager({
    fetch: caFetcher({ url: cfg.controllerURL, caFile: cfg.caFile, tokenFile: cfg.tokenFile }),
    onEvent: (e) => {
      if (e.type === 'issued') certExpiry.set({ identity: e.identity }, e.notAfter.getTime() / 1000);
      if (e.type === 'removed') certExpiry.remove({ identity: e.identity });
      log(e.type === 'issued' || e.type === 'removed' ? 'info' : 'warn', `certificate ${e.type}`, { ...e });
    },
  });
  const localIdentities = () => new Set(store.workloadsOnNode(cfg.node).filter((w) => w.meshed).map((w) => w.identity));
  certificates.setIdentities(localIdentities());
  store.onChange(() => certificates.setIdentities(localIdentities()));

  // Ready: it serves any new connection at once — it has the node's state, a certificate for
  // each meshed workload here (an inbound tunnel to one it has none for would be refused), and
  // its listeners. canServe() is all but the last: beside a predecessor it decides when to bind.
  let draining = false;
  let serving = false;
  const canServe = (): string | undefined => {
    if (draining) return 'draining';
    if (!store.epoch) return 'no state from the controller yet';
    const missing = [...localIdentities()].filter((id) => !certificates.certificateFor(id)).length;
    if (missing > 0) return `no certificate yet for ${missing} local workload identit${missing === 1 ? 'y' : 'ies'}`;
    return undefined;
  };
  const notReady = (): string | undefined => canServe() ?? (serving ? undefined : 'capture listeners not bound yet');
  const agentSocket = await AgentSocket.open(agentSocketPath, () => {
    const why = notReady();
    return { pid: process.pid, version: AGENT_VERSION, startedAt, draining, ...(why === undefined ? {} : { notReady: why }) };
  });

  const pool = new HbonePool({ secureContextFor: (id) => certificates.secureContextFor(id) });
  const enforcer = new PolicyEnforcer({ store, installNamespace: cfg.installNamespace, log });
  const l7 = { limits: cfg.l7Limits, path: cfg.l7Path };
  const inbound = new InboundProxy({ store, node: cfg.node, certificates, report, enforcer, idleTimeoutMs: cfg.idleTimeoutMs, l7 });
  const outbound = new OutboundProxy({
    store,
    node: cfg.node,
    idleTimeoutMs: cfg.idleTimeoutMs,
    report,
    local: inbound,
    tunnels: {
      dial: async ({ source, destination, target }): Promise<ClientHttp2Stream> => {
        // Only a pod whose first certificate is still being issued waits (no timer per connection).
        if (!certificates.certificateFor(source.identity)) await certificates.whenReady(source.identity, AbortSignal.timeout(5000));
        return pool.open({ source: source.identity, destinationIdentity: destination.identity, target, headers: { baggage: baggage(source) } });
      },
    },
  });
  const plaintext = new InboundPlaintextProxy({ store, node: cfg.node, report, idleTimeoutMs: cfg.idleTimeoutMs, enforcer, l7 });
  const serve = async (): Promise<void> => {
    const slow = setTimeout(() => log('warn', 'waiting for the capture ports: a process that does not share them holds them (an agent from before SO_REUSEPORT?)'), 3000);
    await Promise.all([outbound.listen(), plaintext.listen(), inbound.listen()]);
    clearTimeout(slow);
    serving = true;
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

  const settings = cniSettings(cfg);
  // The newest agent process on the node answers the plugin: it takes a live socket over.
  const cniServer = createCniServer({
    socketPath: settings.agentSocket,
    enroller,
    takeOver: true,
    log: { info: (m, f) => log('info', m, f), warn: (m, f) => log('warn', m, f), error: (m, f) => log('error', m, f) },
  });
  await cniServer.listen();
  const readCredentials = async () => ({ caPem: await readFile(cfg.cni.kubeCaSource, 'utf8'), token: (await readFile(cfg.tokenFile, 'utf8')).trim() });
  const credentials = cfg.cni.kubernetes ? await readCredentials() : undefined;
  const installed = await installCniPlugin({ binarySource: cfg.cni.binarySource, binDir: cfg.cni.binDir, confDir: cfg.cni.confDir, settings, ...(credentials ? { credentials } : {}) });
  log('info', 'CNI plugin installed', { binary: installed.binary, chain: installed.chain });
  // The kubelet rotates the agent's projected token; keep the plugin's copy current.
  const kube = cfg.cni.kubernetes;
  const refreshCredentials = kube
    ? setInterval(() => {
        readCredentials()
          .then((c) => writeApiCredentials(kube, c))
          .catch((e: unknown) => log('warn', 'refreshing the CNI plugin credentials failed', { error: (e as Error).message }));
      }, 5 * 60_000)
    : undefined;
  refreshCredentials?.unref();
  const watcher = watchChain({ confDir: cfg.cni.confDir, settings, onResult: (r) => r instanceof Error && log('warn', 'CNI chain check failed', { error: r.message }) });

  let saving: Promise<void> = Promise.resolve();
  const sync = new SyncClient({
    url: cfg.controllerURL,
    node: cfg.node,
    caFile: cfg.caFile,
    tokenFile: cfg.tokenFile,
    agentVersion: AGENT_VERSION,
    store,
    log,
    onApplied: (rev) => {
      syncRevision.set(rev);
      // A draining process still follows the controller (policy changes reach the connections it
      // carries), but the checkpoint is its successor's to write.
      if (draining) return;
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
        return notReady();
      },
      dump: {
        node: () => ({
          node: cfg.node,
          version: AGENT_VERSION,
          pid: process.pid,
          startedAt,
          draining,
          controller: { connected: sync.connected, lastError: sync.lastError, epoch: store.epoch, revision: store.revision },
          daemonSet: ownDaemonSet?.snapshot() ?? null,
          captureNodeTraffic: cfg.captureNodeTraffic,
        }),
        workloads: () => store.workloads(),
        services: () => store.services(),
        config: () => store.config,
        policies: () => ({ revision: store.revision, access: store.accessPolicies(), mtls: store.mtlsPolicies(), openConnectionsWatched: enforcer.openCount }),
        enrolments: () => enroller.enrolments(),
        certificates: () => certificates.snapshot(),
        connections: () => report.openConnections(),
        tunnels: () => pool.snapshot(),
      },
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
    untilAble(canServe, () => draining)
      .then((able) => (able ? serve() : undefined))
      .catch((e: unknown) => log('error', 'binding the capture listeners failed', { error: (e as Error).message }));
  }

  log('info', 'agent started', { node: cfg.node, controller: cfg.controllerURL, pid: process.pid, handover: predecessor });
  return async (signal: string) => {
    // Drain: a successor (an upgrade) or nobody takes new connections from now on; the ones this
    // process carries run to their end or to the deadline. The rules and the CNI plugin stay
    // (fail closed): the node is never left unmeshed by an agent that stops — unless Weft is
    // being removed from the cluster (kube/stop-decision.ts).
    draining = true;
    redirector.handOver();
    serviceCapture.stop();
    const decision = decideOnStop({ successor: await agentSocket.successor(), daemonSet: ownDaemonSet?.snapshot() ?? null });
    await ownDaemonSet?.close();
    if (decision.uninstall) {
      log('info', 'Weft is being removed from the cluster: taking it off the node', { pid: process.pid, reason: decision.reason });
      // The chain watcher would put the entry back; a checkpoint being written would outlive
      // the removal of the node's state.
      await watcher.close();
      await saving;
      await uninstall(cfg, redirector);
    } else {
      log('info', 'leaving the node meshed', { pid: process.pid, reason: decision.reason });
    }
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), cfg.drainMs)));
    // The pid tells two processes of one node apart in the node's log during an upgrade.
    log('info', 'draining', { pid: process.pid, signal, deadlineSeconds: cfg.drainMs / 1000, openConnections: report.openConnections().length });
    clearInterval(gauges);
    clearInterval(refreshCredentials);
    // The node's metrics and admin endpoints are the successor's from now on; health stays.
    for (const s of [endpoints.metrics, endpoints.admin]) {
      s.close();
      s.closeAllConnections();
    }
    const drained = Promise.all([outbound.drain(), plaintext.drain(), inbound.drain(), pool.drain(), cniServer.close({ graceMs: 5000 }), watcher.close()]);
    const outcome = await Promise.race([drained.then(() => 'drained' as const), deadline]);
    clearTimeout(timer);
    // Counted as the access log counts them: a tunnel's streams one by one.
    const reset = outcome === 'drained' ? 0 : report.openConnections().length;
    if (outcome === 'deadline') await Promise.all([outbound.close(), plaintext.close(), inbound.close()]);
    await pool.close({ graceMs: 0 });
    sync.stop();
    certificates.close();
    endpoints.health.close();
    endpoints.health.closeAllConnections();
    await agentSocket.close();
    await saving;
    log('info', 'drained', { pid: process.pid, outcome, seconds: Math.round(performance.now() - started) / 1000, connectionsReset: reset });
  };
}

/** Resolves true once `blocker()` clears, false if `stopped()` comes first. */
async function untilAble(blocker: () => string | undefined, stopped: () => boolean): Promise<boolean> {
  let last: string | undefined;
  for (;;) {
    if (stopped()) return false;
    const why = blocker();
    if (why === undefined) return true;
    if (why !== last) log('info', 'not ready to take over the node yet', { reason: why });
    last = why;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function baggage(w: Workload): string {
  return `k8s.namespace.name=${w.namespace},k8s.pod.name=${w.name},service.name=${w.labels.app ?? w.name}`;
}

export interface UninstallOutcome {
  /** CNI configuration files weft-cni was taken out of. */
  unchained: string[];
  /** The plugin executable: replaced by its tear-down stub, or there was none. */
  binary: 'stub' | 'absent' | 'unknown';
  tableRemoved: boolean;
  /** What failed; each step is tried all the same. */
  errors: string[];
}

/**
 * Takes Weft off the node (`--uninstall`, or a stop after `helm uninstall`). The CNI entry first,
 * and the binary replaced by a stub that only tears down (cni/uninstalled-stub.ts): pods created
 * from then on start without weft-cni, unmeshed, with their networking, and pods created before
 * can still be deleted. Then the `inet weft` table: meshed pods' traffic flows directly. Then the node state
 * a later install must not restore (checkpoint, enrolments, the plugin's copy of the token).
 */
export async function uninstall(cfg: AgentConfig, redirector: Redirector = new Redirector()): Promise<UninstallOutcome> {
  const out: UninstallOutcome = { unchained: [], binary: 'unknown', tableRemoved: false, errors: [] };
  const failed = (what: string) => (e: unknown) => void out.errors.push(`${what}: ${(e as Error).message}`);
  await uninstallCniPlugin({ binDir: cfg.cni.binDir, confDir: cfg.cni.confDir, settings: cniSettings(cfg) }).then(
    (r) => Object.assign(out, { unchained: r.unchained, binary: r.binary }),
    failed('removing weft-cni'),
  );
  await redirector.remove().then(() => (out.tableRemoved = true), failed('removing the nftables table'));
  for (const f of [CHECKPOINT_FILE, ENROLMENTS_FILE]) await rm(join(cfg.stateDir, f), { force: true }).catch(failed(`removing ${f}`));
  log(out.errors.length === 0 ? 'info' : 'error', 'uninstalled: Weft is off this node', { ...out });
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = configFromEnv();
  if (process.argv.includes('--uninstall')) {
    const outcome = await uninstall(cfg);
    if (outcome.errors.length > 0) process.exitCode = 1;
  } else {
    const stop = await runAgent(cfg);
    const shutdown = (sig: string) => {
      void stop(sig).then(() => process.exit(0));
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  }
}
