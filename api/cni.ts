// The contract between the weft-cni plugin (one short-lived process per pod event) and the node
// agent: HTTP/1.1 with JSON bodies over a unix socket, versioned by path. Both sides import this
// file and nothing else to agree on shapes; every message is checked by a hand-written validator
// where it enters a process, because the two sides can be built from different releases during
// an upgrade and the plugin runs with whatever a runtime hands it.
//
// Debug by hand:
//   curl --unix-socket /var/run/weft/cni.sock http://weft/v1/status
//   curl --unix-socket /var/run/weft/cni.sock -d @add.json http://weft/v1/pods/add
//
// Compatibility rule: within v1, fields are only ever added, never removed or retyped, and
// readers ignore fields they do not know. A breaking change gets /v2/ paths.
//
// This module is imported by the plugin's single executable: keep it free of heavy imports.
import { isIP } from 'node:net';

// ---------------------------------------------------------------------------------------------
// Transport

/** Where the agent listens unless the plugin's configuration says otherwise. */
export const DEFAULT_CNI_SOCKET = '/var/run/weft/cni.sock';

export const CNI_API_PATHS = {
  podAdd: '/v1/pods/add',
  podDel: '/v1/pods/del',
  podCheck: '/v1/pods/check',
  gc: '/v1/gc',
  status: '/v1/status',
} as const;

export type CniApiPath = (typeof CNI_API_PATHS)[keyof typeof CNI_API_PATHS];

/** Largest request body the agent reads. A GC list of a few thousand attachments fits easily. */
export const CNI_MAX_BODY_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Messages

/** Who the pod is, from the runtime's CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID). */
export interface PodIdentity {
  namespace: string;
  name: string;
  /** Empty when the runtime does not pass K8S_POD_UID. */
  uid: string;
}

/** One network attachment, as CNI identifies it: (CNI_CONTAINERID, CNI_IFNAME). */
export interface Attachment {
  containerId: string;
  ifname: string;
}

/** POST /v1/pods/add — the pod just got its network from the plugins before weft-cni. */
export interface PodAddRequest extends Attachment {
  pod: PodIdentity;
  /** CNI_NETNS: path of the pod's network namespace. */
  netns: string;
  /** The pod's addresses (no prefix length), from prevResult. Never empty. */
  ips: string[];
  /** Host-side end of the pod's link (e.g. the veth), from prevResult; null when none is listed. */
  hostInterface: string | null;
}

/** The agent has the pod's redirection in place, or has decided the pod is not meshed. */
export type PodAddResponse = { result: 'enrolled' } | { result: 'notMeshed'; reason: string };

/** POST /v1/pods/check — same identity and addresses as the ADD it follows. */
export type PodCheckRequest = PodAddRequest;

/** `missing`: the pod should be enrolled but its redirection is not (fully) in place. */
export type PodCheckResponse =
  | { result: 'enrolled' }
  | { result: 'notMeshed'; reason: string }
  | { result: 'missing'; reason: string };

/** POST /v1/pods/del — may come without a netns and more than once (CNI DEL is idempotent). */
export interface PodDelRequest extends Attachment {
  pod: PodIdentity;
  netns: string | null;
  /** From prevResult when the runtime passed one; may be empty. */
  ips: string[];
}

export type PodDelResponse = { result: 'released' } | { result: 'notEnrolled' };

/** POST /v1/gc — every attachment not listed here is stale. */
export interface GcRequest {
  validAttachments: Attachment[];
}

export interface GcResponse {
  /** How many stale enrolments the agent removed. */
  released: number;
}

/** GET /v1/status — HTTP 200 when ready, 503 when not. */
export type StatusResponse = { ready: true } | { ready: false; reason: string };

/** Error codes the agent answers with, each with the HTTP status it travels under. */
export const CNI_API_ERRORS = {
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  ENROLLER_FAILED: 500,
  NOT_READY: 503,
} as const;

export type CniApiErrorCode = keyof typeof CNI_API_ERRORS;

/** Body of every non-2xx answer. */
export interface ErrorBody {
  error: { code: CniApiErrorCode; message: string };
}

// ---------------------------------------------------------------------------------------------
// The plugin's entry in a conflist. The installer writes it, the plugin reads it: one shape.

export const WEFT_CNI_TYPE = 'weft-cni';

export type CniLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface KubernetesAccess {
  /** Base URL of the API server, e.g. https://10.96.0.1:443. */
  apiServer: string;
  /** PEM bundle that signs the API server's certificate. */
  caFile: string;
  /** File holding a bearer token allowed to get pods and namespaces; read on every use. */
  tokenFile: string;
}

/** weft-cni's own keys in its conflist entry, with defaults applied. */
export interface WeftCniSettings {
  agentSocket: string;
  /** Bound on each call the plugin makes (agent, API server). */
  timeoutMs: number;
  /** Null: log to stderr, which the runtime captures. Never stdout: that is the CNI result. */
  logFile: string | null;
  logLevel: CniLogLevel;
  /** Pods in these namespaces pass straight through; the agent is not asked. */
  excludeNamespaces: string[];
  /** How the plugin decides "meshed?" itself when the agent cannot answer; null: fail closed. */
  kubernetes: KubernetesAccess | null;
}

export const DEFAULT_CNI_SETTINGS: Readonly<Omit<WeftCniSettings, 'kubernetes'>> = Object.freeze({
  agentSocket: DEFAULT_CNI_SOCKET,
  timeoutMs: 5000,
  logFile: null,
  logLevel: 'info',
  excludeNamespaces: ['kube-system'],
});

export const TIMEOUT_MS_RANGE = { min: 100, max: 120_000 } as const;

// ---------------------------------------------------------------------------------------------
// Opt-in (DESIGN.md, "Names"): a pod annotation decides; otherwise the namespace label does.

export const MESH_OPT_IN_KEY = 'weft.dev/mesh';

export interface MeshDecision {
  meshed: boolean;
  reason: string;
}

export function decideMeshed(
  podAnnotations: Readonly<Record<string, string>>,
  namespaceLabels: Readonly<Record<string, string>>,
): MeshDecision {
  const annotation = podAnnotations[MESH_OPT_IN_KEY];
  if (annotation === 'enabled') return { meshed: true, reason: `pod annotation ${MESH_OPT_IN_KEY}=enabled` };
  if (annotation === 'disabled') return { meshed: false, reason: `pod annotation ${MESH_OPT_IN_KEY}=disabled` };
  if (namespaceLabels[MESH_OPT_IN_KEY] === 'enabled') {
    return { meshed: true, reason: `namespace label ${MESH_OPT_IN_KEY}=enabled` };
  }
  return { meshed: false, reason: 'no opt-in on the pod or its namespace' };
}

// ---------------------------------------------------------------------------------------------
// Validators. Each takes untrusted data (already JSON-parsed) and returns a fresh, fully typed
// value holding only the known fields, or throws CniContractError naming the offending path.

export class CniContractError extends Error {
  readonly code = 'CNI_CONTRACT_INVALID';
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'CniContractError';
    this.path = path;
  }
}

type Obj = Record<string, unknown>;

function object(v: unknown, path: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniContractError(path, 'must be an object');
  return v as Obj;
}

function string(v: unknown, path: string, opts: { empty?: boolean; max?: number; pattern?: RegExp } = {}): string {
  if (typeof v !== 'string') throw new CniContractError(path, 'must be a string');
  if (!opts.empty && v.length === 0) throw new CniContractError(path, 'must not be empty');
  if (v.length > (opts.max ?? 4096)) throw new CniContractError(path, `must be at most ${opts.max ?? 4096} characters`);
  if (opts.pattern && v.length > 0 && !opts.pattern.test(v)) {
    throw new CniContractError(path, `must match ${String(opts.pattern)}`);
  }
  return v;
}

function array<T>(v: unknown, path: string, item: (v: unknown, path: string) => T, max = 100_000): T[] {
  if (!Array.isArray(v)) throw new CniContractError(path, 'must be an array');
  if (v.length > max) throw new CniContractError(path, `must have at most ${max} items`);
  return v.map((x, i) => item(x, `${path}[${i}]`));
}

function literal<const T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw new CniContractError(path, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
}

/** Kubernetes names: DNS-1123 subdomain for pods, label for namespaces; checked loosely here. */
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
/** CNI spec, "Container ID". */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Linux interface names: at most 15 bytes, no '/', no whitespace. */
const IFNAME = /^[^/\s:]{1,15}$/;

function ip(v: unknown, path: string): string {
  const s = string(v, path, { max: 64 });
  if (isIP(s) === 0) throw new CniContractError(path, 'must be an IPv4 or IPv6 address without prefix length');
  return s;
}

function podIdentity(v: unknown, path: string): PodIdentity {
  const o = object(v, path);
  return {
    namespace: string(o.namespace, `${path}.namespace`, { max: 63, pattern: K8S_NAME }),
    name: string(o.name, `${path}.name`, { max: 253, pattern: K8S_NAME }),
    uid: string(o.uid, `${path}.uid`, { empty: true, max: 128 }),
  };
}

function attachment(v: unknown, path: string): Attachment {
  const o = object(v, path);
  return {
    containerId: string(o.containerId, `${path}.containerId`, { max: 1024, pattern: CONTAINER_ID }),
    ifname: string(o.ifname, `${path}.ifname`, { pattern: IFNAME }),
  };
}

export function parsePodAddRequest(v: unknown): PodAddRequest {
  const o = object(v, '$');
  const ips = array(o.ips, '$.ips', ip, 64);
  if (ips.length === 0) throw new CniContractError('$.ips', 'must list at least one address');
  return {
    pod: podIdentity(o.pod, '$.pod'),
    ...attachment(o, '$'),
    netns: string(o.netns, '$.netns'),
    ips,
    hostInterface: o.hostInterface === null ? null : string(o.hostInterface, '$.hostInterface', { pattern: IFNAME }),
  };
}

export const parsePodCheckRequest: (v: unknown) => PodCheckRequest = parsePodAddRequest;

export function parsePodDelRequest(v: unknown): PodDelRequest {
  const o = object(v, '$');
  return {
    pod: podIdentity(o.pod, '$.pod'),
    ...attachment(o, '$'),
    netns: o.netns === null ? null : string(o.netns, '$.netns'),
    ips: array(o.ips, '$.ips', ip, 64),
  };
}

export function parseGcRequest(v: unknown): GcRequest {
  const o = object(v, '$');
  return { validAttachments: array(o.validAttachments, '$.validAttachments', attachment) };
}

export function parsePodAddResponse(v: unknown): PodAddResponse {
  const o = object(v, '$');
  const result = literal(o.result, '$.result', ['enrolled', 'notMeshed']);
  if (result === 'enrolled') return { result };
  return { result, reason: string(o.reason, '$.reason', { empty: true }) };
}

export function parsePodCheckResponse(v: unknown): PodCheckResponse {
  const o = object(v, '$');
  const result = literal(o.result, '$.result', ['enrolled', 'notMeshed', 'missing']);
  if (result === 'enrolled') return { result };
  return { result, reason: string(o.reason, '$.reason', { empty: true }) };
}

export function parsePodDelResponse(v: unknown): PodDelResponse {
  const o = object(v, '$');
  return { result: literal(o.result, '$.result', ['released', 'notEnrolled']) };
}

export function parseGcResponse(v: unknown): GcResponse {
  const o = object(v, '$');
  if (!Number.isSafeInteger(o.released) || (o.released as number) < 0) {
    throw new CniContractError('$.released', 'must be a non-negative integer');
  }
  return { released: o.released as number };
}

export function parseStatusResponse(v: unknown): StatusResponse {
  const o = object(v, '$');
  if (o.ready === true) return { ready: true };
  if (o.ready === false) return { ready: false, reason: string(o.reason, '$.reason', { empty: true }) };
  throw new CniContractError('$.ready', 'must be a boolean');
}

export function parseErrorBody(v: unknown): ErrorBody {
  const o = object(object(v, '$').error, '$.error');
  return {
    error: {
      code: literal(o.code, '$.error.code', Object.keys(CNI_API_ERRORS) as CniApiErrorCode[]),
      message: string(o.message, '$.error.message', { empty: true }),
    },
  };
}

/**
 * Reads weft-cni's keys from its conflist entry (the runtime passes the whole entry on stdin,
 * plus `cniVersion`, `name`, `prevResult`... which are not this function's business).
 */
export function parseWeftCniSettings(v: unknown): WeftCniSettings {
  const o = object(v, '$');
  const absolutePath = (x: unknown, path: string): string => {
    const s = string(x, path);
    if (!s.startsWith('/')) throw new CniContractError(path, 'must be an absolute path');
    return s;
  };
  let timeoutMs = DEFAULT_CNI_SETTINGS.timeoutMs;
  if (o.timeoutMs !== undefined) {
    if (!Number.isSafeInteger(o.timeoutMs)) throw new CniContractError('$.timeoutMs', 'must be an integer');
    timeoutMs = o.timeoutMs as number;
    if (timeoutMs < TIMEOUT_MS_RANGE.min || timeoutMs > TIMEOUT_MS_RANGE.max) {
      throw new CniContractError('$.timeoutMs', `must be between ${TIMEOUT_MS_RANGE.min} and ${TIMEOUT_MS_RANGE.max}`);
    }
  }
  let kubernetes: KubernetesAccess | null = null;
  if (o.kubernetes !== undefined && o.kubernetes !== null) {
    const k = object(o.kubernetes, '$.kubernetes');
    const apiServer = string(k.apiServer, '$.kubernetes.apiServer');
    if (!/^https:\/\/[^/?#\s]+\/?$/.test(apiServer)) {
      throw new CniContractError('$.kubernetes.apiServer', 'must be an https:// URL with no path');
    }
    kubernetes = {
      apiServer: apiServer.replace(/\/$/, ''),
      caFile: absolutePath(k.caFile, '$.kubernetes.caFile'),
      tokenFile: absolutePath(k.tokenFile, '$.kubernetes.tokenFile'),
    };
  }
  return {
    agentSocket: o.agentSocket === undefined ? DEFAULT_CNI_SETTINGS.agentSocket : absolutePath(o.agentSocket, '$.agentSocket'),
    timeoutMs,
    logFile: o.logFile === undefined || o.logFile === null ? null : absolutePath(o.logFile, '$.logFile'),
    logLevel: o.logLevel === undefined ? DEFAULT_CNI_SETTINGS.logLevel : literal(o.logLevel, '$.logLevel', ['debug', 'info', 'warn', 'error']),
    excludeNamespaces:
      o.excludeNamespaces === undefined
        ? [...DEFAULT_CNI_SETTINGS.excludeNamespaces]
        : array(o.excludeNamespaces, '$.excludeNamespaces', (x, p) => string(x, p, { max: 63, pattern: K8S_NAME }), 1000),
    kubernetes,
  };
}
