// The controller → agent protocol (agent sync): the contract both sides import.
//
// Transport: HTTP/2 over TLS to the controller's port 15012. The agent authenticates with its
// service-account token (`authorization: Bearer …`), bound to its Node through the TokenRequest
// API, which the controller checks with a TokenReview: the node an agent speaks for is whatever its
// token is bound to, never what it claims.
//
//   POST /weft.v1/sync   one long-lived bidirectional stream of newline-delimited JSON:
//                        controller → agent: SyncMessage (large ones as a GzipLine to an agent
//                        whose hello lists `gzip`); agent → controller: AgentMessage.
//   POST /weft.v1/sign   one request: SignRequest → SignResponse (the mesh CA).
//
// Sync is versioned, incremental and acknowledged. The controller numbers every change to the
// state it computes with a revision, within an epoch (one controller process lifetime). On
// connect the agent says which epoch and revision it last applied; if the controller still holds
// the changes since then it sends only those. Revisions mean nothing to another controller process
// (a restart, another replica), so an agent with the `digests` feature also says what it holds by
// content (api/agent-sync-digest.ts), and any controller sends it only the buckets that differ, in
// a resume delta; an agent without the feature gets a full snapshot. The agent ACKs each
// revision it applied, or NACKs it with a reason and keeps its last good state; it keeps that state
// for as long as the controller is away.
//
// The sync stream, step by step (controller/server/ implements the controller's side):
//   1. The agent opens the POST with `authorization` and `content-type: application/x-ndjson` and
//      sends `hello` as its first line; the controller answers the request headers only after
//      reading it. Refusals before that point are a plain HTTP status with an ErrorBody: 401 (no or
//      bad token), 403 (not the agent's service account, or a hello naming another node than the
//      token's), 400 (first line not a hello), 503 (controller not synced yet: retry).
//   2. 200, then a snapshot or delta (or resume delta) right away. A delta with base == revision
//      and nothing in it means "you are current". Further deltas follow as the state changes, each based on the
//      previous message unless the agent NACKed (then based on its last ACKed revision).
//   3. The controller ends a stream it refuses mid-way (a malformed line, an ACK for a revision it
//      never sent, shutdown) with HTTP/2 trailers `weft-error-code` / `weft-error-message`
//      (SYNC_ERROR_TRAILERS); the agent reconnects with back-off and resumes.
//   Liveness: the controller sends HTTP/2 PINGs and closes a connection that stops answering; no
//   heartbeat lines travel on the stream, so every line is a message.

import { gunzipSync } from 'node:zlib';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy } from './policy/model.ts';
import { checkCompiledAccessPolicy, checkCompiledMeshTLSPolicy } from './policy/wire.ts';
import { checkCompiledRoute, type CompiledRoute } from './route.ts';
import { validBuckets, type HelloDigests, type ReplacedBuckets } from './agent-sync-digest.ts';

/**
 * A pod in the pod network of a node (scheduled, not host-network, not finished). Every agent
 * learns every such pod, meshed or not, so that it can tunnel to meshed ones and knows which ones
 * are not. A pod is announced as soon as it is scheduled, with `ips: []` until the API has its
 * addresses, so that its node's agent knows at CNI ADD whether to capture it.
 */
export interface Workload {
  /** `<namespace>/<name>` */
  key: string;
  uid: string;
  namespace: string;
  name: string;
  node: string;
  ips: string[];
  serviceAccount: string;
  /** `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` */
  identity: string;
  /** Whether the pod (or its namespace) opted in and is not opted out. */
  meshed: boolean;
  labels: Record<string, string>;
  /** Named container ports (`ports[].name` → `containerPort`, TCP), for policies naming ports. */
  namedPorts: Record<string, number>;
  /**
   * The addresses of the pod's node (`status.hostIPs`): where that node's agent dials tunnels
   * from on clusters that route pod traffic natively. The tunnel server uses them to prove which
   * node a peer connects from (agent/hbone/source-claim.ts). Absent until the kubelet reports
   * them, and in checkpoints written before they were announced.
   */
  hostIPs?: string[];
  /**
   * TCP ports the kubelet probes on the pod's own IP (httpGet, tcpSocket, grpc probes), sorted.
   * The node agent lets exactly these through from the node; anything else the node sends to a
   * meshed pod is captured like any plaintext client (agent/redirect/rules.ts). Absent from
   * controllers before it: no port is exempt.
   */
  probePorts?: number[];
  /**
   * The share of requests to this pod, arriving without a trace, for which its agent starts one:
   * the `weft.dev/trace-sampling` annotation of the pod, else of its namespace. Absent: the
   * chart's `tracing.samplingRatio`.
   */
  traceSampling?: number;
}

export interface ServicePort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  /** The Service's appProtocol, or the protocol the port name implies (`http`, `grpc`, ...). */
  appProtocol: string;
}

export interface Endpoint {
  ip: string;
  /** Port name → target port, from the EndpointSlice. */
  ports: Record<string, number>;
  ready: boolean;
  /** `<namespace>/<pod>` when the endpoint is a pod. */
  workload?: string;
}

export interface Service {
  /** `<namespace>/<name>` */
  key: string;
  namespace: string;
  name: string;
  clusterIPs: string[];
  ports: ServicePort[];
  endpoints: Endpoint[];
}

export interface MeshConfig {
  trustDomain: string;
  /** Mesh-wide mTLS mode. */
  mtlsMode: 'STRICT' | 'PERMISSIVE';
}

export type Resource =
  | { kind: 'Workload'; value: Workload }
  | { kind: 'Service'; value: Service }
  /**
   * A valid AccessPolicy, compiled (api/policy/model.ts). Policies of both kinds are sent to a node
   * only while they select a meshed workload there (controller/state/node-scope.ts).
   */
  | { kind: 'AccessPolicy'; value: CompiledAccessPolicy }
  | { kind: 'MeshTLSPolicy'; value: CompiledMeshTLSPolicy }
  /**
   * A Gateway API route with Service parents, compiled (api/route.ts). Every agent gets every
   * route: the client's node agent applies it. Sent only to agents whose hello lists the
   * `routes` feature (AGENT_FEATURES), since an older agent refuses a kind it does not know.
   */
  | { kind: 'Route'; value: CompiledRoute };
export type ResourceKind = Resource['kind'];
export type ResourceRef = { kind: ResourceKind; key: string };
export const RESOURCE_KINDS: readonly ResourceKind[] = ['Workload', 'Service', 'AccessPolicy', 'MeshTLSPolicy', 'Route'];

/**
 * What this agent understands beyond the first protocol, announced in its hello. `digests`: it can
 * say what it holds by content (hello.digests) and apply a resume delta (delta.resume). `gzip`: it
 * takes a message compressed (GzipLine), which the controller sends for large messages only.
 * `grpcroutes`: it applies GRPCRoutes to gRPC requests only; an agent with `routes` alone gets
 * HTTPRoutes only, since it would match its HTTP/1.1 requests against a GRPCRoute's rules.
 */
export const AGENT_FEATURES = ['routes', 'digests', 'gzip', 'grpcroutes'] as const;
export type AgentFeature = (typeof AGENT_FEATURES)[number];

export type SyncMessage =
  | {
      type: 'snapshot';
      epoch: string;
      revision: number;
      config: MeshConfig;
      resources: Resource[];
    }
  | {
      type: 'delta';
      epoch: string;
      revision: number;
      /** Revision the delta applies on top of; an agent at another revision must reconnect. */
      base: number;
      config?: MeshConfig;
      upserts: Resource[];
      removes: ResourceRef[];
      /**
       * Set only for an agent whose hello had digests, as the first message of the stream: the
       * delta applies to the state the agent announced, (resume.epoch, resume.revision), whatever
       * the controller's epoch, instead of to `base`. Before the upserts and removes the agent
       * drops what it holds in each replaced bucket (api/agent-sync-digest.ts), so that each
       * such bucket ends up exactly as the controller's. Everything else it holds is already
       * equal. It carries the config.
       */
      resume?: { epoch: string; revision: number; replace: ReplacedBuckets };
    };

/**
 * A message compressed, for an agent whose hello lists `gzip`: the base64 parts, decoded and
 * concatenated, are a gzip stream (one or more members) of the message's JSON. A snapshot is 3 MB
 * at 10,000 pods and about 8× smaller compressed. Parts, not one string, so that the controller
 * compresses what every node's snapshot shares (the workloads and services) once per revision and
 * only each node's policies per node; base64 keeps the stream one JSON object per line.
 */
export interface GzipLine {
  type: 'gzip';
  parts: string[];
}

/** The most a compressed message may expand to: a limit on what a bad line can make an agent allocate. */
export const MAX_GZIP_DECODED_BYTES = 256 * 1024 * 1024;

export type AgentMessage =
  | {
      type: 'hello';
      node: string;
      epoch?: string;
      revision?: number;
      agentVersion: string;
      features?: string[];
      /** What the agent holds, by content, when it holds something (the `digests` feature). */
      digests?: HelloDigests;
    }
  | { type: 'ack'; epoch: string; revision: number }
  | { type: 'nack'; epoch: string; revision: number; reason: string };

export interface SignRequest {
  namespace: string;
  serviceAccount: string;
  csrPem: string;
}

export interface SignResponse {
  certChainPem: string;
  trustBundlePem: string;
  notAfter: string;
}

export const SYNC_PATH = '/weft.v1/sync';
export const SIGN_PATH = '/weft.v1/sign';
export const CONTROLLER_PORT = 15012;
/** The name agents verify in the controller's serving certificate (its Service's DNS name). */
export const CONTROLLER_SERVER_NAME = 'weft-controller.weft-system.svc';
export const MESH_ANNOTATION = 'weft.dev/mesh';
export const MESH_LABEL = 'weft.dev/mesh';
export const SYNC_CONTENT_TYPE = 'application/x-ndjson';

/** Trailers that end a sync stream the controller refused after answering 200. */
export const SYNC_ERROR_TRAILERS = { code: 'weft-error-code', message: 'weft-error-message' } as const;

/** Codes in ErrorBody and in the `weft-error-code` trailer. */
export type AgentApiErrorCode =
  | 'UNAUTHENTICATED' // 401: no bearer token, or the API server rejected it
  | 'FORBIDDEN' // 403: authenticated, but not the agent's service account or not bound to a node
  | 'NODE_MISMATCH' // 403: hello names another node than the one the token is bound to
  | 'NOT_AUTHORIZED_FOR_IDENTITY' // 403: no pod with that service account on the agent's node
  | 'BAD_REQUEST' // 400: not JSON, missing fields, first sync line not a hello
  | 'PROTOCOL_ERROR' // trailer: a malformed or out-of-order message mid-stream
  | 'CSR_INVALID' // 400: the CSR does not parse or verify
  | 'KEY_UNSUPPORTED' // 400: the CSR's key is not EC P-256
  | 'IDENTITY_INVALID' // 400: namespace / service account cannot form a SPIFFE ID
  | 'PAYLOAD_TOO_LARGE' // 413
  | 'NOT_FOUND' // 404
  | 'METHOD_NOT_ALLOWED' // 405
  | 'RATE_LIMITED' // 429 + retry-after: too many unknown tokens from this address, or too many reviews at once
  | 'NOT_READY' // 503: caches not synced, or the API server cannot review tokens right now
  | 'SHUTTING_DOWN' // trailer / 503: the controller is stopping; reconnect to another replica
  | 'INTERNAL'; // 500

export interface ErrorBody {
  error: { code: AgentApiErrorCode; message: string };
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

// ---- validation where the data enters (a malformed message is refused, never half-applied) ----

export class ProtocolError extends Error {
  readonly code = 'PROTOCOL_ERROR';
  override readonly name = 'ProtocolError';
}

type Json = unknown;
const isObj = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: Json): v is string => typeof v === 'string';
const isStrArr = (v: Json): v is string[] => Array.isArray(v) && v.every(isStr);
const isInt = (v: Json): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function need(cond: boolean, path: string, what: string): asserts cond {
  if (!cond) throw new ProtocolError(`${path}: ${what}`);
}

function checkWorkload(v: Json, p: string): Workload {
  need(isObj(v), p, 'must be an object');
  for (const f of ['key', 'uid', 'namespace', 'name', 'node', 'serviceAccount', 'identity'] as const) need(isStr(v[f]), `${p}.${f}`, 'must be a string');
  need(isStrArr(v.ips), `${p}.ips`, 'must be a list of strings');
  need(typeof v.meshed === 'boolean', `${p}.meshed`, 'must be a boolean');
  need(isObj(v.labels) && Object.values(v.labels).every(isStr), `${p}.labels`, 'must map strings to strings');
  // Absent in checkpoints written before named ports were announced.
  v.namedPorts ??= {};
  need(isObj(v.namedPorts) && Object.values(v.namedPorts).every(isInt), `${p}.namedPorts`, 'must map port names to numbers');
  need(v.probePorts === undefined || (Array.isArray(v.probePorts) && v.probePorts.every((n) => isInt(n) && n >= 1 && n <= 65535)), `${p}.probePorts`, 'must be a list of TCP ports');
  need(v.hostIPs === undefined || isStrArr(v.hostIPs), `${p}.hostIPs`, 'must be a list of strings');
  need(v.traceSampling === undefined || (typeof v.traceSampling === 'number' && v.traceSampling >= 0 && v.traceSampling <= 1), `${p}.traceSampling`, 'must be a number from 0 to 1');
  return v as unknown as Workload;
}

function checkService(v: Json, p: string): Service {
  need(isObj(v), p, 'must be an object');
  for (const f of ['key', 'namespace', 'name'] as const) need(isStr(v[f]), `${p}.${f}`, 'must be a string');
  need(isStrArr(v.clusterIPs), `${p}.clusterIPs`, 'must be a list of strings');
  need(Array.isArray(v.ports), `${p}.ports`, 'must be a list');
  v.ports.forEach((sp: Json, i: number) => {
    need(isObj(sp) && isStr(sp.name) && isInt(sp.port) && isStr(sp.protocol) && isStr(sp.appProtocol), `${p}.ports[${i}]`, 'must have name, port, protocol, appProtocol');
  });
  need(Array.isArray(v.endpoints), `${p}.endpoints`, 'must be a list');
  v.endpoints.forEach((e: Json, i: number) => {
    need(isObj(e) && isStr(e.ip) && typeof e.ready === 'boolean' && isObj(e.ports) && Object.values(e.ports).every(isInt), `${p}.endpoints[${i}]`, 'must have ip, ready, ports');
  });
  return v as unknown as Service;
}

function checkResource(v: Json, p: string): Resource {
  need(isObj(v), p, 'must be an object');
  if (v.kind === 'Workload') return { kind: 'Workload', value: checkWorkload(v.value, `${p}.value`) };
  if (v.kind === 'Service') return { kind: 'Service', value: checkService(v.value, `${p}.value`) };
  if (v.kind === 'AccessPolicy') return { kind: 'AccessPolicy', value: checkCompiledAccessPolicy(v.value, `${p}.value`) };
  if (v.kind === 'MeshTLSPolicy') return { kind: 'MeshTLSPolicy', value: checkCompiledMeshTLSPolicy(v.value, `${p}.value`) };
  if (v.kind === 'Route') {
    try {
      return { kind: 'Route', value: checkCompiledRoute(v.value, `${p}.value`) };
    } catch (e) {
      throw new ProtocolError((e as Error).message);
    }
  }
  throw new ProtocolError(`${p}.kind: unknown kind ${JSON.stringify(v.kind)}`);
}

function checkConfig(v: Json, p: string): MeshConfig {
  need(isObj(v) && isStr(v.trustDomain), `${p}.trustDomain`, 'must be a string');
  need(v.mtlsMode === 'STRICT' || v.mtlsMode === 'PERMISSIVE', `${p}.mtlsMode`, 'must be STRICT or PERMISSIVE');
  return v as unknown as MeshConfig;
}

/** One JSON object, or a ProtocolError naming what was expected. */
function parseObject(text: string, what: string): Record<string, Json> {
  let v: Json;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError(`${what} is not JSON`);
  }
  need(isObj(v), what, 'must be an object');
  return v;
}

export function parseSyncMessage(line: string): SyncMessage {
  return checkSyncMessage(parseObject(line, 'message'), true);
}

function gunzipParts(v: Record<string, Json>): string {
  need(Array.isArray(v.parts) && v.parts.length > 0 && v.parts.every(isStr), 'parts', 'must be a list of base64 strings');
  const gz = Buffer.concat(v.parts.map((p) => Buffer.from(p, 'base64')));
  try {
    return gunzipSync(gz, { maxOutputLength: MAX_GZIP_DECODED_BYTES }).toString('utf8');
  } catch (e) {
    throw new ProtocolError(`parts: not a gzip stream of at most ${MAX_GZIP_DECODED_BYTES} bytes (${(e as Error).message})`);
  }
}

function checkSyncMessage(v: Record<string, Json>, gzipAllowed: boolean): SyncMessage {
  // Compressed once, never twice: a message inside a compressed one is plain.
  if (v.type === 'gzip' && gzipAllowed) return checkSyncMessage(parseObject(gunzipParts(v), 'compressed message'), false);
  need(isStr(v.epoch), 'epoch', 'must be a string');
  need(isInt(v.revision), 'revision', 'must be a non-negative integer');
  if (v.type === 'snapshot') {
    need(Array.isArray(v.resources), 'resources', 'must be a list');
    return { type: 'snapshot', epoch: v.epoch, revision: v.revision, config: checkConfig(v.config, 'config'), resources: v.resources.map((r: Json, i: number) => checkResource(r, `resources[${i}]`)) };
  }
  if (v.type === 'delta') {
    need(isInt(v.base), 'base', 'must be a non-negative integer');
    need(Array.isArray(v.upserts) && Array.isArray(v.removes), 'delta', 'needs upserts and removes lists');
    const removes = v.removes.map((r: Json, i: number): ResourceRef => {
      need(isObj(r) && RESOURCE_KINDS.includes(r.kind as ResourceKind) && isStr(r.key), `removes[${i}]`, 'must have kind and key');
      return { kind: r.kind as ResourceKind, key: r.key };
    });
    return {
      type: 'delta',
      epoch: v.epoch,
      revision: v.revision,
      base: v.base,
      ...(v.config !== undefined ? { config: checkConfig(v.config, 'config') } : {}),
      upserts: v.upserts.map((r: Json, i: number) => checkResource(r, `upserts[${i}]`)),
      removes,
      ...(v.resume !== undefined ? { resume: checkResume(v.resume) } : {}),
    };
  }
  throw new ProtocolError(`type: unknown message type ${JSON.stringify(v.type)}`);
}

function checkResume(v: Json): { epoch: string; revision: number; replace: ReplacedBuckets } {
  need(isObj(v) && isStr(v.epoch) && isInt(v.revision) && isObj(v.replace), 'resume', 'needs epoch, revision and replace');
  for (const [kind, r] of Object.entries(v.replace)) {
    need(RESOURCE_KINDS.includes(kind as ResourceKind), `resume.replace.${kind}`, 'unknown kind');
    need(isObj(r) && validBuckets(r.buckets) && Array.isArray(r.ids) && r.ids.every((i) => isInt(i) && i < (r.buckets as number)), `resume.replace.${kind}`, 'needs buckets and bucket ids');
  }
  return v as unknown as { epoch: string; revision: number; replace: ReplacedBuckets };
}

function checkDigests(v: Json): void {
  need(isObj(v), 'hello.digests', 'must be an object');
  for (const [kind, d] of Object.entries(v)) {
    need(RESOURCE_KINDS.includes(kind as ResourceKind), `hello.digests.${kind}`, 'unknown kind');
    need(isObj(d) && validBuckets(d.buckets) && isStr(d.sums) && d.sums.length <= 4 * 1024 * 8, `hello.digests.${kind}`, 'needs buckets (a power of two up to 1024) and sums');
  }
}

// What an agent sends is read by the controller, kept in its registry and written to its logs:
// names and versions have sizes, whatever fits in a line. (A NACK reason is cut, not refused.)
const MAX_NODE_NAME = 253;
const MAX_SHORT_FIELD = 256;

export function parseAgentMessage(line: string): AgentMessage {
  const v = parseObject(line, 'message');
  switch (v.type) {
    case 'hello':
      need(isStr(v.node) && isStr(v.agentVersion), 'hello', 'needs node and agentVersion');
      need(v.node.length <= MAX_NODE_NAME, 'hello.node', `must be at most ${MAX_NODE_NAME} characters`);
      need(v.agentVersion.length <= MAX_SHORT_FIELD, 'hello.agentVersion', `must be at most ${MAX_SHORT_FIELD} characters`);
      need(v.epoch === undefined || (isStr(v.epoch) && v.epoch.length <= MAX_SHORT_FIELD), 'hello.epoch', `must be a string of at most ${MAX_SHORT_FIELD} characters`);
      need(v.revision === undefined || isInt(v.revision), 'hello.revision', 'must be a non-negative integer');
      need(v.features === undefined || (isStrArr(v.features) && v.features.length <= 32 && v.features.every((f) => f.length <= 64)), 'hello.features', 'must be a short list of short strings');
      if (v.digests !== undefined) checkDigests(v.digests);
      return v as unknown as AgentMessage;
    case 'ack':
      need(isStr(v.epoch) && isInt(v.revision), 'ack', 'needs epoch and revision');
      return v as unknown as AgentMessage;
    case 'nack':
      need(isStr(v.epoch) && isInt(v.revision) && isStr(v.reason), 'nack', 'needs epoch, revision and reason');
      return v as unknown as AgentMessage;
    default:
      // Quoted back in the refusal, so only a little of it.
      throw new ProtocolError(`type: unknown message type ${String(JSON.stringify(v.type)).slice(0, 64)}`);
  }
}

export function parseSignRequest(body: string): SignRequest {
  const v = parseObject(body, 'request');
  need(isStr(v.namespace) && isStr(v.serviceAccount) && isStr(v.csrPem), 'sign', 'needs namespace, serviceAccount and csrPem');
  return { namespace: v.namespace, serviceAccount: v.serviceAccount, csrPem: v.csrPem };
}
