// The agent's configuration: everything comes from the environment, as the chart's DaemonSet
// passes it (helm/weft/templates/agent-daemonset.yaml). A value that does not parse stops the
// agent at start with a message naming the variable, never later on the data path.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CNI_SETTINGS, type WeftCniSettings } from '../api/cni.ts';
import { DEFAULT_L7_LIMITS, DEFAULT_PATH_OPTIONS, type L7Limits, type PathOptions } from './l7/index.ts';
import { inClusterServer, type KubeAccess } from './kube/access.ts';
import { DEFAULT_MIRROR_LIMITS, MIRROR_LIMIT_BOUNDS, type MirrorLimits } from './route/mirror-limits.ts';
import { tracingFromEnv, type TracingSettings } from './tracing/settings.ts';

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
  /**
   * Data-plane worker threads (WEFT_DATA_PLANE_WORKERS, docs/agent-threads.md): 0 keeps the data
   * plane on the main thread; N ≥ 1 runs it on N workers sharing the capture ports; `auto`, one
   * per core the process may use.
   */
  dataPlaneWorkers: number;
  /** OTLP export of request spans (WEFT_TRACING_*, chart values tracing.*); null: off. */
  tracing: TracingSettings | null;
  /**
   * Bounds on RequestMirror copies (WEFT_ROUTE_MIRROR_*, chart values agent.routes.mirror): the
   * largest request body copied, copies in flight per data-plane thread, and how long a copy may
   * wait for its answer (route/mirror-limits.ts).
   */
  routeMirror: MirrorLimits;
}


/** Checkpoints in the state directory that a later install must not restore. */
export const CHECKPOINT_FILE = 'state.json';
export const ENROLMENTS_FILE = 'enrolled.json';

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

/** A whole number from `min` to `max`. */
function wholeIn(name: string, fallback: number, b: { min: number; max: number }): number {
  const raw = process.env[name];
  const v = raw === undefined || raw.trim() === '' ? fallback : Number(raw);
  if (!Number.isInteger(v) || v < b.min || v > b.max) throw Object.assign(new Error(`${name} must be a whole number from ${b.min} to ${b.max}, not "${raw}"`), { code: 'CONFIG' });
  return v;
}

/** Seconds (fractions allowed) from `min` to `max`, in ms. */
function secondsIn(name: string, fallbackMs: number, b: { min: number; max: number }): number {
  const raw = process.env[name];
  const v = raw === undefined || raw.trim() === '' ? fallbackMs / 1000 : Number(raw);
  if (!Number.isFinite(v) || v < b.min || v > b.max) throw Object.assign(new Error(`${name} must be a number of seconds from ${b.min} to ${b.max}, not "${raw}"`), { code: 'CONFIG' });
  return Math.round(v * 1000);
}

function workers(name: string, fallback: string): number {
  const v = env(name, fallback).trim().toLowerCase();
  if (v === 'auto') return availableParallelism();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 256) throw Object.assign(new Error(`${name} must be auto or a whole number from 0 to 256, not "${process.env[name]}"`), { code: 'CONFIG' });
  return n;
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
    dataPlaneWorkers: workers('WEFT_DATA_PLANE_WORKERS', '0'),
    tracing: tracingFromEnv(process.env),
    routeMirror: {
      maxBodyBytes: wholeIn('WEFT_ROUTE_MIRROR_MAX_BODY_BYTES', DEFAULT_MIRROR_LIMITS.maxBodyBytes, MIRROR_LIMIT_BOUNDS.maxBodyBytes),
      maxInFlight: wholeIn('WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT', DEFAULT_MIRROR_LIMITS.maxInFlight, MIRROR_LIMIT_BOUNDS.maxInFlight),
      timeoutMs: secondsIn('WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS', DEFAULT_MIRROR_LIMITS.timeoutMs, MIRROR_LIMIT_BOUNDS.timeoutSeconds),
    },
    daemonSet: daemonSet ? { name: daemonSet, namespace: installNamespace, access: { server: inClusterServer(process.env), caFile: kubeCaFile, tokenFile } } : null,
  };
}

/** The plugin's settings, as the agent writes them into the node's CNI configuration. */
export function cniSettings(cfg: AgentConfig): WeftCniSettings {
  return {
    ...DEFAULT_CNI_SETTINGS,
    excludeNamespaces: [...DEFAULT_CNI_SETTINGS.excludeNamespaces],
    agentSocket: join(cfg.stateDir, 'cni.sock'),
    logFile: join(cfg.stateDir, 'cni.log'),
    kubernetes: cfg.cni.kubernetes,
  };
}
