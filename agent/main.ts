// The Weft node agent: composition root. Runs in the node's network namespace (hostNetwork)
// with NET_ADMIN. Configuration comes from the environment, as a DaemonSet passes it.
//
// Start order matters for fail-closed capture: listeners first, then the redirect rules (restored
// from the checkpoint in one nftables transaction), then the CNI socket and plugin install, then
// the controller connection. A restarted agent therefore captures exactly what it captured before
// as soon as it can serve it, and until then the kernel refuses the traffic: it never bypasses.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientHttp2Stream } from 'node:http2';
import { DEFAULT_CNI_SETTINGS, type WeftCniSettings } from '../api/cni.ts';
import { createLogger } from '../api/log.ts';
import type { Workload } from '../api/agent-sync.ts';
import { startEndpoints } from './admin.ts';
import { createCniServer } from './cni/server.ts';
import { installCniPlugin, uninstallCniPlugin, watchChain, writeApiCredentials } from './cni/install.ts';
import { NodeEnroller } from './enrol/enroller.ts';
import { HbonePool } from './hbone/pool.ts';
import { CertificateManager } from './identity/manager.ts';
import { certExpiry, enrolledPods, syncConnected, syncRevision } from './metrics.ts';
import { PolicyEnforcer } from './proxy/enforcer.ts';
import { InboundProxy } from './proxy/inbound.ts';
import { InboundPlaintextProxy } from './proxy/inbound-plaintext.ts';
import { OutboundProxy } from './proxy/outbound.ts';
import { ConnectionReporter } from './proxy/report.ts';
import { Redirector } from './redirect/nftables.ts';
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
  /** Weft's install namespace: AccessPolicies there are mesh-wide. */
  installNamespace: string;
}

function env(name: string, fallback?: string): string {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw Object.assign(new Error(`environment variable ${name} is required`), { code: 'CONFIG' });
  return v;
}

export function configFromEnv(): AgentConfig {
  const stateDir = env('WEFT_STATE_DIR', '/var/run/weft');
  const apiServer = process.env.WEFT_CNI_KUBE_API;
  return {
    node: env('NODE_NAME'),
    controllerURL: env('WEFT_CONTROLLER', 'https://weft-controller.weft-system.svc:15012'),
    tokenFile: env('WEFT_TOKEN_FILE', '/var/run/secrets/weft/token'),
    caFile: env('WEFT_CA_FILE', '/var/run/secrets/weft/ca.crt'),
    stateDir,
    cni: {
      binarySource: env('WEFT_CNI_BINARY', '/usr/local/lib/weft/weft-cni'),
      binDir: env('WEFT_CNI_BIN_DIR', '/opt/cni/bin'),
      confDir: env('WEFT_CNI_CONF_DIR', '/etc/cni/net.d'),
      kubernetes: apiServer
        ? { apiServer, caFile: join(stateDir, 'cni-kube-ca.crt'), tokenFile: join(stateDir, 'cni-kube-token') }
        : null,
      kubeCaSource: env('WEFT_CNI_KUBE_CA_SOURCE', '/var/run/secrets/weft/kube-ca.crt'),
    },
    bind: env('WEFT_BIND', '0.0.0.0'),
    idleTimeoutMs: Number(env('WEFT_IDLE_TIMEOUT_SECONDS', '3600')) * 1000,
    installNamespace: env('WEFT_NAMESPACE', 'weft-system'),
  };
}

const logger = createLogger({}, { write: (line) => void process.stdout.write(line) });
export function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  logger[level](msg, fields);
}

export async function runAgent(cfg: AgentConfig): Promise<() => Promise<void>> {
  await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  const store = new StateStore();
  const checkpoint = join(cfg.stateDir, 'state.json');
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

  const pool = new HbonePool({ secureContextFor: (id) => certificates.secureContextFor(id) });
  const enforcer = new PolicyEnforcer({ store, installNamespace: cfg.installNamespace, log });
  const inbound = new InboundProxy({ store, node: cfg.node, certificates, report, enforcer, idleTimeoutMs: cfg.idleTimeoutMs });
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
  const plaintext = new InboundPlaintextProxy({ store, node: cfg.node, report, idleTimeoutMs: cfg.idleTimeoutMs, enforcer });
  await Promise.all([outbound.listen(), plaintext.listen(), inbound.listen()]);

  const enroller = new NodeEnroller({ node: cfg.node, store, redirector: new Redirector(), stateFile: join(cfg.stateDir, 'enrolled.json'), log });
  await enroller.start();

  const settings: WeftCniSettings = {
    ...DEFAULT_CNI_SETTINGS,
    excludeNamespaces: [...DEFAULT_CNI_SETTINGS.excludeNamespaces],
    agentSocket: join(cfg.stateDir, 'cni.sock'),
    logFile: join(cfg.stateDir, 'cni.log'),
    kubernetes: cfg.cni.kubernetes,
  };
  const cniServer = createCniServer({
    socketPath: settings.agentSocket,
    enroller,
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
      saving = saving.then(() => store.save(checkpoint)).catch((e: unknown) => log('warn', 'checkpoint failed', { error: (e as Error).message }));
    },
  });
  sync.start();

  const endpoints = await startEndpoints(
    {
      notReady: () => (store.epoch ? undefined : 'no state from the controller yet'),
      dump: {
        node: () => ({ node: cfg.node, version: AGENT_VERSION, controller: { connected: sync.connected, lastError: sync.lastError, epoch: store.epoch, revision: store.revision } }),
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

  log('info', 'agent started', { node: cfg.node, controller: cfg.controllerURL });
  return async () => {
    // Drain: stop accepting, let open connections finish, keep the rules (fail closed: a new
    // agent process takes over the same ports and sets).
    clearInterval(gauges);
    clearInterval(refreshCredentials);
    sync.stop();
    await watcher.close();
    await cniServer.close();
    await Promise.all([outbound.close(), plaintext.close(), inbound.close(5000)]);
    await pool.close({ graceMs: 1000 });
    certificates.close();
    for (const s of endpoints) s.close();
    await saving;
  };
}

function baggage(w: Workload): string {
  return `k8s.namespace.name=${w.namespace},k8s.pod.name=${w.name},service.name=${w.labels.app ?? w.name}`;
}

export async function uninstall(cfg: AgentConfig): Promise<void> {
  await new Redirector().remove().catch(() => {});
  await uninstallCniPlugin({ binDir: cfg.cni.binDir, confDir: cfg.cni.confDir });
  log('info', 'uninstalled: CNI plugin and redirect rules removed');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = configFromEnv();
  if (process.argv.includes('--uninstall')) {
    await uninstall(cfg);
  } else {
    const stop = await runAgent(cfg);
    const shutdown = (sig: string) => {
      log('info', 'draining', { signal: sig });
      void stop().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  }
}
