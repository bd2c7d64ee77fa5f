// `weft policy check`: which policy and rule decide a connection (and, on an HTTP port, a request)
// from one pod to another — the what-if tool.
//
// It must never disagree with the mesh, so it owns no policy logic: the Workloads and Services are
// computed by the controller's compute.ts, the policies compiled by the controller's compile.ts,
// and the decision taken by the agent's PolicyIndex, following the path the destination's agent
// takes (agent/proxy/inbound.ts, inbound-plaintext.ts, outbound.ts).
//
// Two halves: `explainPolicyCheck` is pure (Kubernetes objects in, explanation out) and is what the
// tests drive; `policyCommand` is the I/O around it (arguments, kubeconfig, API reads, output).
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  type V1EndpointSlice,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import type { Service, Workload } from '../api/agent-sync.ts';
import { apiErrorSummary, httpStatus } from '../api/kube-errors.ts';
import { compileAccessPolicy, compileMeshTLSPolicy, type CompileContext } from '../api/policy/compile.ts';
import {
  ACCESS_POLICY_PLURAL,
  MESH_TLS_POLICY_PLURAL,
  POLICY_GROUP,
  POLICY_VERSION,
  type CompiledAccessPolicy,
  type CompiledMeshTLSPolicy,
  type MtlsMode,
  type PolicyProblem,
} from '../api/policy/model.ts';
import type { AccessPolicy, MeshTLSPolicy } from '../api/policy/types.gen.ts';
import { normalizePath } from '../agent/l7/path.ts';
import type { RequestAttrs, SourceAttrs } from '../agent/policy/attributes.ts';
import type { ConnectionDecision, Decision } from '../agent/policy/decision.ts';
import { PolicyIndex } from '../agent/policy/index.ts';
import { computeService, computeWorkload, meshDecision, objectKey, podIPs } from '../controller/state/compute.ts';

// ---- the question and the answer ---------------------------------------------------------------------

/**
 * What the check reads from the cluster: at least the two pods; the Services and EndpointSlices of
 * the destination's namespace; the policies of that namespace and of the install namespace (no
 * others can apply to the destination); and every namespace (namespaceSelectors are resolved
 * against them, as the controller does).
 */
export interface ClusterObjects {
  pods: V1Pod[];
  namespaces: V1Namespace[];
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  accessPolicies: AccessPolicy[];
  meshTLSPolicies: MeshTLSPolicy[];
}

/** What the controller is configured with (its flags), which the API does not tell. */
export interface MeshSettings {
  installNamespace: string;
  trustDomain: string;
  /** The mesh-wide mTLS mode (the controller's --mtls-mode). */
  mtlsMode: MtlsMode;
  /**
   * The agents capture what the node itself sends to meshed pods (the chart's
   * agent.captureNodeTraffic, default true); false trusts the node as before.
   */
  captureNodeTraffic?: boolean;
}

export interface CheckRequest {
  method: string;
  /** Origin-form target; normalized as the agent does before policy sees it. */
  path: string;
  /** Default: the Host header if one is given, else the destination pod's address. */
  host?: string;
  /** `[name, value]` pairs; repeated names are joined with ',' as the agent does. */
  headers: [string, string][];
}

export interface CheckQuestion {
  /** `<namespace>/<pod>` */
  source: string;
  destination: string;
  /** A container port number or name; default: the destination's first container port. */
  port?: string;
  request: CheckRequest;
}

/** How the connection reaches the destination, which decides what its agent knows of the source. */
export type CheckPath =
  /** Across nodes in an HBONE tunnel: the source identity is its certificate's. */
  | 'mtls'
  /** Meshed source on the destination's node: the agent delivers it with the source's identity. */
  | 'same-node'
  /** From outside the mesh: the mTLS mode decides first, then policy without an identity. */
  | 'plaintext'
  /** Weft does not see the connection (destination not meshed, node-local, a pod to itself). */
  | 'not-captured';

export interface PodView {
  /** `<namespace>/<name>` */
  pod: string;
  ip: string;
  node: string;
  meshed: boolean;
  /** Why the pod is (not) in the mesh: compute.ts's reason, or `finished`. */
  meshReason: string;
  /** The SPIFFE ID its certificate carries, for a meshed pod. */
  identity?: string;
}

export interface DestinationView extends PodView {
  /** Absent only when the destination is not in the mesh and has no port to name. */
  port?: number;
  /** The names the port goes by (container port names, Service port names). */
  portNames: string[];
  /** The application protocol of the port, from the Services that target it (`tcp` if none says). */
  appProtocol?: string;
  /** Whether the agent parses HTTP on this port (L7 rules apply). */
  http?: boolean;
}

export interface CheckedRequest {
  method: string;
  /** Normalized path, without the query. */
  path: string;
  host: string;
  headers: Record<string, string>;
  /** True when the decision depended on the request (the connection was to be inspected). */
  evaluated: boolean;
  detail: string;
}

export interface SelectingPolicy {
  kind: 'AccessPolicy' | 'MeshTLSPolicy';
  key: string;
  generation: number;
  /** ALLOW / DENY / AUDIT, or STRICT / PERMISSIVE for a MeshTLSPolicy. */
  action: string;
  scope: string;
  /** For a MeshTLSPolicy: whether it is the one that sets this workload's mode. */
  inForce?: boolean;
  warnings: string[];
}

export interface IgnoredPolicy {
  kind: 'AccessPolicy' | 'MeshTLSPolicy';
  key: string;
  generation: number;
  problems: string[];
}

export interface PolicyCheck {
  from: PodView;
  to: DestinationView;
  path: CheckPath;
  pathDetail: string;
  /** The mTLS mode of the destination port; absent when Weft does not see the connection. */
  mtls?: { mode: MtlsMode; setBy: string; policy?: string };
  /** Present when the connection reached access policy. */
  request?: CheckedRequest;
  decision: 'ALLOW' | 'DENY';
  /** What decided: a policy and rule, or the default that applied. */
  by: string;
  policy?: string;
  rule?: string;
  reason: string;
  /** AUDIT rules that matched. */
  audit: { policy: string; rule: string }[];
  /** Policies (compiled) that select the destination. */
  policies: SelectingPolicy[];
  /** Policies that could apply to the destination but do not compile. */
  ignored: IgnoredPolicy[];
  notes: string[];
}

export type PolicyCheckErrorCode = 'USAGE' | 'UNKNOWN_POD' | 'NO_PORT' | 'BAD_REQUEST' | 'NO_CLUSTER' | 'API';

export class PolicyCheckError extends Error {
  readonly code: PolicyCheckErrorCode;
  constructor(code: PolicyCheckErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = 'PolicyCheckError';
  }
}

/** Exit codes, so that scripts can branch on the verdict. */
export const EXIT = { allow: 0, error: 1, usage: 2, deny: 3 } as const;

export function exitCodeOf(check: PolicyCheck): number {
  return check.decision === 'ALLOW' ? EXIT.allow : EXIT.deny;
}

// ---- the pure part -----------------------------------------------------------------------------------

const IGNORED_NOTE =
  'a policy that does not compile is ignored here; the controller keeps the last generation of it that compiled in force, ' +
  'which this check cannot know: see the policy\'s status (kubectl describe)';

export function parsePodRef(ref: string, what: string): { namespace: string; name: string } {
  const slash = ref.indexOf('/');
  if (slash <= 0 || slash === ref.length - 1 || ref.indexOf('/', slash + 1) >= 0) {
    throw new PolicyCheckError('USAGE', `${what} must be <namespace>/<pod>, not "${ref}"`);
  }
  return { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

export function explainPolicyCheck(objects: ClusterObjects, q: CheckQuestion, settings: MeshSettings): PolicyCheck {
  return inReadingOrder(explain(objects, q, settings));
}

/** The fields in the order the text output shows them, so that -o json reads the same way. */
function inReadingOrder(c: PolicyCheck): PolicyCheck {
  const { from, to, path, pathDetail, mtls, request, decision, by, policy, rule, reason, audit, policies, ignored, notes } = c;
  return {
    from,
    to,
    path,
    pathDetail,
    ...(mtls !== undefined ? { mtls } : {}),
    ...(request !== undefined ? { request } : {}),
    decision,
    by,
    ...(policy !== undefined ? { policy } : {}),
    ...(rule !== undefined ? { rule } : {}),
    reason,
    audit,
    policies,
    ignored,
    notes,
  };
}

function explain(objects: ClusterObjects, q: CheckQuestion, settings: MeshSettings): PolicyCheck {
  const srcRef = parsePodRef(q.source, 'the source');
  const dstRef = parsePodRef(q.destination, 'the destination');
  const srcPod = findPod(objects.pods, srcRef);
  const dstPod = findPod(objects.pods, dstRef);
  const namespaces = new Map(objects.namespaces.map((n) => [n.metadata?.name ?? '', n]));

  const compiled = compilePolicies(objects, settings);
  const workloads: Workload[] = [];
  for (const p of objects.pods) {
    const w = computeWorkload(p, namespaces.get(p.metadata?.namespace ?? ''), settings.trustDomain);
    if (w) workloads.push(w);
  }
  const services = objects.services.map((s) => computeService(s, objects.endpointSlices)).filter((s): s is Service => s !== null);
  const index = new PolicyIndex({ access: compiled.access, mtls: compiled.mtls, workloads, services, installNamespace: settings.installNamespace });

  const srcKey = objectKey(srcRef.namespace, srcRef.name);
  const dstKey = objectKey(dstRef.namespace, dstRef.name);
  const src = workloads.find((w) => w.key === srcKey);
  const dst = workloads.find((w) => w.key === dstKey);
  const from = podView(srcPod, src, namespaces);
  const notes: string[] = [];
  const ignored = compiled.ignored.filter((p) => p.key.startsWith(`${dstRef.namespace}/`) || p.key.startsWith(`${settings.installNamespace}/`));
  if (ignored.length > 0) notes.push(IGNORED_NOTE);

  const base = { from, audit: [], ignored, notes };
  if (!dst || !dst.meshed) {
    // The port does not matter here: shown when it resolves, never an error.
    const port = resolvePort(dstPod, dst, q.port);
    const to: DestinationView = { ...podView(dstPod, dst, namespaces), ...(typeof port === 'number' ? { port } : {}), portNames: [] };
    const policies = dst ? selectingPolicies(index, compiled, dst, undefined) : [];
    if (policies.length > 0) notes.push('policies select this pod, but it is not in the mesh: they cannot protect it');
    return {
      ...base,
      to,
      path: 'not-captured',
      pathDetail:
        `the destination is not in the mesh (${to.meshReason}): no agent enforces policy for it` +
        (from.meshed ? "; the source's agent passes the connection through in plaintext" : ''),
      decision: 'ALLOW',
      by: 'not in the mesh: no Weft policy applies',
      reason: 'allowed: the destination is not in the mesh',
      policies,
    };
  }

  const port = resolvePort(dstPod, dst, q.port);
  if (typeof port === 'string') throw new PolicyCheckError('NO_PORT', port);
  const info = index.portInfo(dst, port);
  const to: DestinationView = { ...podView(dstPod, dst, namespaces), port, portNames: [...info.names], appProtocol: info.appProtocol, http: info.http };
  const mtlsRes = index.mtlsMode(dst, port, settings.mtlsMode);
  const mtls = {
    mode: mtlsRes.mode,
    setBy: mtlsRes.policy !== undefined ? `MeshTLSPolicy ${mtlsRes.policy}` : `the mesh default (--mtls-mode ${settings.mtlsMode})`,
    ...(mtlsRes.policy !== undefined ? { policy: mtlsRes.policy } : {}),
  };
  const policies = selectingPolicies(index, compiled, dst, mtlsRes.policy);
  if (dst.ips.length === 0) notes.push('the destination has no IP yet: nothing can connect to it until it has one');
  if (from.ip === '') notes.push('the source has no IP yet: ipBlocks rules cannot match it');
  const shared = { ...base, to, mtls, policies };

  const route = routeOf(srcPod, src, dst, from, port, settings.captureNodeTraffic ?? true);
  if (route.source === undefined) {
    return { ...shared, path: route.path, pathDetail: route.detail, decision: 'ALLOW', by: 'not captured: no Weft policy applies', reason: 'allowed: not captured' };
  }
  const { path, detail: pathDetail, source } = route;
  if (path === 'plaintext') {
    if (mtlsRes.policy === undefined) notes.push("the mesh-wide mTLS mode is the controller's --mtls-mode, which the API does not show: pass the same --mtls-mode here");
    // The plaintext listener checks the mode before access policy (agent/proxy/inbound-plaintext.ts).
    if (mtls.mode === 'STRICT') {
      return {
        ...shared,
        path,
        pathDetail,
        decision: 'DENY',
        by: mtls.setBy,
        ...(mtls.policy !== undefined ? { policy: mtls.policy } : {}),
        reason: 'plaintext refused: mTLS mode is STRICT',
      };
    }
  }

  const attrs = { source, destination: dst, port, ...(dst.ips[0] !== undefined ? { destinationIp: dst.ips[0] } : {}) };
  const connection: ConnectionDecision = index.evaluateConnection(attrs);
  const request = checkedRequest(q.request, dst);
  let decided: Decision;
  if (connection.verdict === 'inspect') {
    decided = connection.requests.evaluate(requestAttrs(request));
    request.evaluated = true;
    request.detail = `port ${port} is HTTP (appProtocol ${info.appProtocol}) and a rule needs the request: the request was evaluated`;
  } else {
    decided = connection;
    request.detail = info.http
      ? `port ${port} is HTTP (appProtocol ${info.appProtocol}), but no rule that applies needs the request: decided on the connection`
      : `port ${port} speaks ${info.appProtocol}, not HTTP: L7 rules do not apply (an ALLOW rule with HTTP fields never matches here); the request was not evaluated`;
  }
  return {
    ...shared,
    path,
    pathDetail,
    request,
    decision: decided.verdict === 'allow' ? 'ALLOW' : 'DENY',
    by: byOf(decided, policies),
    ...(decided.policy !== undefined ? { policy: decided.policy } : {}),
    ...(decided.rule !== undefined ? { rule: decided.rule } : {}),
    reason: decided.reason,
    audit: decided.audits.map((a) => ({ policy: a.policy, rule: a.rule })),
  };
}

interface Route {
  path: CheckPath;
  detail: string;
  /** What the destination's agent knows of the source; undefined when no agent sees the connection. */
  source?: SourceAttrs;
}

/** How a connection from the source reaches a meshed destination, as the agents route it. */
function routeOf(srcPod: V1Pod, src: Workload | undefined, dst: Workload, from: PodView, port: number, captureNode: boolean): Route {
  // A pod's connection to itself stays inside its network namespace. The node's own traffic
  // (host-network pods, node processes) leaves through the output path, where the agent captures
  // it like any plaintext client, except the kubelet's probe ports (agent/redirect/rules.ts).
  if (src?.key === dst.key) return { path: 'not-captured', detail: "a pod's connection to itself stays inside the pod" };
  if (srcPod.spec?.hostNetwork === true && srcPod.spec.nodeName === dst.node) {
    if (!captureNode) {
      return { path: 'not-captured', detail: `the source uses the host network of ${dst.node}, the destination's node, and node traffic is trusted (agent.captureNodeTraffic=false)` };
    }
    if (dst.probePorts?.includes(port)) {
      return { path: 'not-captured', detail: `port ${port} is one the kubelet probes: the node reaches it directly, past the agent` };
    }
    return {
      path: 'plaintext',
      detail: `the source uses the host network of ${dst.node}, the destination's node: its agent captures the node's traffic as plaintext, without an identity`,
      source: { ip: from.ip },
    };
  }
  if (src?.meshed === true) {
    const source = { principal: src.identity, namespace: src.namespace, ip: from.ip };
    return src.node === dst.node
      ? { path: 'same-node', detail: `both pods run on ${dst.node}: its agent delivers the connection with the source's identity`, source }
      : { path: 'mtls', detail: `HBONE tunnel from ${src.node} to ${dst.node}: the source's identity is proven by its certificate`, source };
  }
  return {
    path: 'plaintext',
    detail: `the source is not in the mesh (${from.meshReason}): the destination's agent gets plaintext, without an identity`,
    source: { ip: from.ip },
  };
}

function findPod(pods: readonly V1Pod[], ref: { namespace: string; name: string }): V1Pod {
  const pod = pods.find((p) => p.metadata?.namespace === ref.namespace && p.metadata?.name === ref.name);
  if (!pod) throw new PolicyCheckError('UNKNOWN_POD', `there is no pod "${ref.name}" in namespace "${ref.namespace}"`);
  return pod;
}

function podView(pod: V1Pod, w: Workload | undefined, namespaces: ReadonlyMap<string, V1Namespace>): PodView {
  const ns = pod.metadata?.namespace ?? '';
  const meshed = w?.meshed === true;
  // computeWorkload leaves out finished pods, whatever they asked for.
  const finished = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
  return {
    pod: objectKey(ns, pod.metadata?.name ?? ''),
    ip: podIPs(pod)[0] ?? '',
    node: pod.spec?.nodeName ?? '',
    meshed,
    meshReason: finished ? 'finished' : meshDecision(pod, namespaces.get(ns)).reason,
    ...(meshed && w ? { identity: w.identity } : {}),
  };
}

/**
 * The destination port: a number, a container port name, or (none given) the first TCP container
 * port. An error text when the pod has no such port (a usage error throws).
 */
function resolvePort(pod: V1Pod, w: Workload | undefined, asked: string | undefined): number | string {
  const podKey = objectKey(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
  if (asked === undefined) {
    const first = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []).find((p) => (p.protocol ?? 'TCP') === 'TCP');
    return first?.containerPort ?? `pod ${podKey} declares no TCP container port: say which port with --port`;
  }
  if (/^\d+$/.test(asked)) {
    const n = Number(asked);
    if (n >= 1 && n <= 65535) return n;
    throw new PolicyCheckError('USAGE', `--port must be 1-65535 or a port name, not "${asked}"`);
  }
  return w?.namedPorts[asked] ?? `pod ${podKey} has no TCP container port named "${asked}"`;
}

interface CompiledPolicies {
  access: CompiledAccessPolicy[];
  mtls: CompiledMeshTLSPolicy[];
  warnings: Map<string, string[]>;
  ignored: IgnoredPolicy[];
}

/** What the controller's policy reconciler makes of the objects: compiled, or refused with problems. */
function compilePolicies(objects: ClusterObjects, settings: MeshSettings): CompiledPolicies {
  const ctx: CompileContext = {
    installNamespace: settings.installNamespace,
    trustDomain: settings.trustDomain,
    namespaces: objects.namespaces.map((n) => ({ name: n.metadata?.name ?? '', labels: n.metadata?.labels ?? {} })),
  };
  const out: CompiledPolicies = { access: [], mtls: [], warnings: new Map(), ignored: [] };
  const refused = (kind: IgnoredPolicy['kind'], obj: AccessPolicy | MeshTLSPolicy, problems: PolicyProblem[]) =>
    out.ignored.push({
      kind,
      key: objectKey(obj.metadata?.namespace ?? '', obj.metadata?.name ?? ''),
      generation: obj.metadata?.generation ?? 0,
      problems: problems.map(problemText),
    });
  for (const obj of objects.accessPolicies) {
    const r = compileAccessPolicy(obj, ctx);
    if (!r.ok) refused('AccessPolicy', obj, r.problems);
    else {
      out.access.push(r.policy);
      out.warnings.set(`AccessPolicy/${r.policy.key}`, r.warnings.map(problemText));
    }
  }
  for (const obj of objects.meshTLSPolicies) {
    const r = compileMeshTLSPolicy(obj, ctx);
    if (!r.ok) refused('MeshTLSPolicy', obj, r.problems);
    else {
      out.mtls.push(r.policy);
      out.warnings.set(`MeshTLSPolicy/${r.policy.key}`, r.warnings.map(problemText));
    }
  }
  out.ignored.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}

function problemText(p: PolicyProblem): string {
  return p.path ? `${p.path}: ${p.message}` : p.message;
}

function selectingPolicies(index: PolicyIndex, compiled: CompiledPolicies, dst: Workload, mtlsPolicy: string | undefined): SelectingPolicy[] {
  const keys = new Set(index.accessPoliciesFor(dst));
  const access = compiled.access
    .filter((p) => keys.has(p.key))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .map((p): SelectingPolicy => ({
      kind: 'AccessPolicy',
      key: p.key,
      generation: p.generation,
      action: p.action,
      scope: p.scope,
      warnings: compiled.warnings.get(`AccessPolicy/${p.key}`) ?? [],
    }));
  const mtls = compiled.mtls
    .filter((p) => index.selects(p, dst))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .map((p): SelectingPolicy => ({
      kind: 'MeshTLSPolicy',
      key: p.key,
      generation: p.generation,
      action: p.ports.length > 0 ? `${p.mode} (ports ${p.ports.map((o) => `${o.port}: ${o.mode}`).join(', ')})` : p.mode,
      scope: p.scope,
      inForce: p.key === mtlsPolicy,
      warnings: compiled.warnings.get(`MeshTLSPolicy/${p.key}`) ?? [],
    }));
  return [...access, ...mtls];
}

function byOf(d: Decision, policies: readonly SelectingPolicy[]): string {
  if (d.policy !== undefined) return `${d.policy}, rule ${d.rule ?? '?'}`;
  if (d.verdict === 'deny') return 'no ALLOW rule matched';
  return policies.some((p) => p.kind === 'AccessPolicy') ? 'default: no DENY rule matched and no ALLOW policy applies' : 'default: no policy applies';
}

/** The request as the agent's L7 path hands it to policy: normalized the same way. */
function checkedRequest(r: CheckRequest, dst: Workload): CheckedRequest {
  const method = r.method.toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new PolicyCheckError('USAGE', `--method must be an HTTP method such as GET, not "${r.method}"`);
  const normalized = normalizePath(r.path);
  if (!normalized.ok) throw new PolicyCheckError('BAD_REQUEST', `--path "${r.path}": ${normalized.reason} (the agent refuses such a request before policy)`);
  const headers: Record<string, string> = {};
  for (const [name, value] of r.headers) {
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]},${value}` : value;
  }
  const host = normalizeHost(r.host ?? headers.host ?? dst.ips[0] ?? '');
  return { method, path: normalized.path, host, headers, evaluated: false, detail: '' };
}

function requestAttrs(r: CheckedRequest): RequestAttrs {
  return { method: r.method, path: r.path, host: r.host, header: (name) => r.headers[name] };
}

/** Lower-case, without the port or a trailing dot (the agent's L7 contract, agent/l7/types.ts). */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    h = close > 0 ? h.slice(1, close) : h;
  } else if (h.split(':').length === 2) {
    h = h.slice(0, h.indexOf(':'));
  }
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

// ---- output ------------------------------------------------------------------------------------------

const PATH_NAMES: Record<CheckPath, string> = { mtls: 'mtls', 'same-node': 'same node', plaintext: 'plaintext', 'not-captured': 'not captured' };

export function formatPolicyCheck(c: PolicyCheck): string {
  const lines: string[] = [];
  const row = (label: string, value: string) => lines.push(`${label.padEnd(10)}${value}`);
  const more = (value: string) => lines.push(`${''.padEnd(10)}${value}`);
  const pod = (p: PodView) => `${p.pod} (${p.ip || 'no IP'} on ${p.node || 'no node'}; ${p.meshed ? `meshed as ${p.identity ?? '?'}` : `not meshed: ${p.meshReason}`})`;

  row('FROM', pod(c.from));
  const port =
    c.to.port === undefined
      ? ''
      : `, port ${c.to.port}${c.to.appProtocol !== undefined ? ` (${c.to.appProtocol}${c.to.http ? ', HTTP' : ''}${c.to.portNames.length > 0 ? `; names ${c.to.portNames.join(', ')}` : ''})` : ''}`;
  row('TO', `${pod(c.to)}${port}`);
  row('PATH', `${PATH_NAMES[c.path]}: ${c.pathDetail}`);
  if (c.mtls) row('MTLS', `${c.mtls.mode}, set by ${c.mtls.setBy}`);
  if (c.request) {
    const headers = Object.entries(c.request.headers).map(([k, v]) => `${k}: ${v}`);
    row('REQUEST', `${c.request.method} ${c.request.path} (host ${c.request.host || '-'}${headers.length > 0 ? `; ${headers.join('; ')}` : ''})`);
    more(c.request.detail);
  }
  row('DECISION', c.decision);
  row('BY', c.by);
  row('REASON', c.reason);
  row('AUDIT', c.audit.length === 0 ? '-' : c.audit.map((a) => `${a.policy}, rule ${a.rule}`).join('; '));
  if (c.policies.length === 0) row('POLICIES', 'none selects the destination');
  c.policies.forEach((p, i) => {
    const inForce = p.inForce === undefined ? '' : p.inForce ? ', sets the mode' : ', outranked by a more specific or older policy';
    (i === 0 ? (v: string) => row('POLICIES', v) : more)(`${p.kind} ${p.key} ${p.action} (${p.scope}, generation ${p.generation}${inForce})`);
    for (const w of p.warnings) more(`  warning: ${w}`);
  });
  for (const p of c.ignored) {
    row('IGNORED', `${p.kind} ${p.key} (generation ${p.generation}) does not compile:`);
    for (const problem of p.problems) more(`  ${problem}`);
  }
  for (const n of c.notes) row('NOTE', n);
  return lines.join('\n');
}

// ---- the I/O part ------------------------------------------------------------------------------------

export interface KubeconfigChoice {
  /** undefined: the client library's default (in-cluster, or ~/.kube/config). */
  path: string | undefined;
  from: string;
}

export interface KubeconfigSources {
  flag?: string;
  /** --name given explicitly. */
  playground?: string;
  env?: string;
  /** The playground to use when it is running and nothing else is said (`weft`). */
  defaultPlayground: string;
  /** The admin kubeconfig of a running playground, if it is running. */
  playgroundKubeconfig(name: string): Promise<string | undefined>;
  home: string;
}

/**
 * Which cluster to ask: --kubeconfig, then an explicitly named playground (an explicit flag beats
 * the environment), then $KUBECONFIG, then the default playground if it runs, then ~/.kube/config.
 */
export async function chooseKubeconfig(s: KubeconfigSources): Promise<KubeconfigChoice> {
  if (s.flag) return { path: s.flag, from: '--kubeconfig' };
  if (s.playground !== undefined) {
    const path = await s.playgroundKubeconfig(s.playground);
    if (!path) throw new PolicyCheckError('NO_CLUSTER', `no playground named "${s.playground}" is running`);
    return { path, from: `playground "${s.playground}"` };
  }
  if (s.env) return { path: s.env, from: '$KUBECONFIG' };
  const running = await s.playgroundKubeconfig(s.defaultPlayground);
  if (running) return { path: running, from: `playground "${s.defaultPlayground}"` };
  const home = join(s.home, '.kube', 'config');
  if (existsSync(home)) return { path: home, from: '~/.kube/config' };
  return { path: undefined, from: 'in-cluster configuration' };
}

/** The cluster a `weft ... check` asks (chooseKubeconfig), loaded; `fail` makes the command's own error. */
export async function loadKubeconfig(
  o: { kubeconfig?: string | undefined; playground?: string | undefined; defaultPlayground: string },
  fail: (message: string, cause: unknown) => Error,
): Promise<KubeConfig> {
  const choice = await chooseKubeconfig({
    ...(o.kubeconfig !== undefined ? { flag: o.kubeconfig } : {}),
    ...(o.playground !== undefined ? { playground: o.playground } : {}),
    ...(process.env.KUBECONFIG ? { env: process.env.KUBECONFIG } : {}),
    defaultPlayground: o.defaultPlayground,
    playgroundKubeconfig: runningPlaygroundKubeconfig,
    home: homedir(),
  });
  const kc = new KubeConfig();
  try {
    if (choice.path !== undefined) kc.loadFromFile(choice.path);
    else kc.loadFromCluster();
  } catch (err) {
    throw fail(`loading the kubeconfig from ${choice.from}: ${(err as Error).message}`, err);
  }
  return kc;
}

export async function runningPlaygroundKubeconfig(name: string): Promise<string | undefined> {
  const { isAlive, readState } = await import('../playground/state.ts');
  const s = await readState(name);
  return s && isAlive(s.supervisorPid) && existsSync(s.plan.paths.adminKubeconfig) ? s.plan.paths.adminKubeconfig : undefined;
}

/**
 * Reads what the check needs, and no more: the two pods, every namespace (namespaceSelectors), the
 * Services and EndpointSlices of the destination's namespace (a port's protocol comes from the
 * Services that select the pod, which live in its namespace), and the policies of that namespace
 * and the install namespace (no others can apply). A missing policy CRD counts as no policies.
 */
export async function readClusterObjects(kc: KubeConfig, source: string, destination: string, installNamespace: string): Promise<{ objects: ClusterObjects; notes: string[] }> {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const src = parsePodRef(source, 'the source');
  const dst = parsePodRef(destination, 'the destination');
  const policyNamespaces = [...new Set([dst.namespace, installNamespace])];
  const notes: string[] = [];

  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw new PolicyCheckError('API', `reading ${what}: ${apiErrorSummary(err)}`, { cause: err });
    }
  };
  const pod = async (ref: { namespace: string; name: string }): Promise<V1Pod> => {
    try {
      return await core.readNamespacedPod(ref);
    } catch (err) {
      if (httpStatus(err) === 404) throw new PolicyCheckError('UNKNOWN_POD', `there is no pod "${ref.name}" in namespace "${ref.namespace}"`, { cause: err });
      throw new PolicyCheckError('API', `reading pod ${ref.namespace}/${ref.name}: ${apiErrorSummary(err)}`, { cause: err });
    }
  };
  const policies = async <T>(kind: string, plural: string): Promise<T[]> => {
    const lists = await Promise.all(
      policyNamespaces.map(async (namespace) => {
        try {
          const list = (await custom.listNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace, plural })) as { items?: T[] };
          return list.items ?? [];
        } catch (err) {
          if (httpStatus(err) !== 404) throw new PolicyCheckError('API', `listing ${kind}s in ${namespace}: ${apiErrorSummary(err)}`, { cause: err });
          if (!notes.some((n) => n.startsWith(`the ${kind} CRD`))) notes.push(`the ${kind} CRD is not installed: no ${kind}s`);
          return [];
        }
      }),
    );
    return lists.flat();
  };

  const [srcPod, dstPod, namespaces, services, slices, accessPolicies, meshTLSPolicies] = await Promise.all([
    pod(src),
    pod(dst),
    call('namespaces', () => core.listNamespace()),
    call(`Services in ${dst.namespace}`, () => core.listNamespacedService({ namespace: dst.namespace })),
    call(`EndpointSlices in ${dst.namespace}`, () => discovery.listNamespacedEndpointSlice({ namespace: dst.namespace })),
    policies<AccessPolicy>('AccessPolicy', ACCESS_POLICY_PLURAL),
    policies<MeshTLSPolicy>('MeshTLSPolicy', MESH_TLS_POLICY_PLURAL),
  ]);
  return {
    objects: {
      pods: srcPod === dstPod ? [srcPod] : [srcPod, dstPod],
      namespaces: namespaces.items,
      services: services.items,
      endpointSlices: slices.items,
      accessPolicies,
      meshTLSPolicies,
    },
    notes,
  };
}

export interface CheckArgs {
  question: CheckQuestion;
  settings: MeshSettings;
  output: 'text' | 'json';
  kubeconfig?: string;
  playground?: string;
}

/** `check <ns>/<src> <ns>/<dst> [flags]` → what to ask; PolicyCheckError('USAGE') when malformed. */
export function parseCheckArgs(argv: string[]): CheckArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        method: { type: 'string', default: 'GET' },
        path: { type: 'string', default: '/' },
        host: { type: 'string' },
        header: { type: 'string', multiple: true, default: [] },
        output: { type: 'string', short: 'o', default: 'text' },
        kubeconfig: { type: 'string' },
        name: { type: 'string' },
        namespace: { type: 'string', default: 'weft-system' },
        'trust-domain': { type: 'string', default: 'cluster.local' },
        'mtls-mode': { type: 'string', default: 'PERMISSIVE' },
        'trust-node-traffic': { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    throw new PolicyCheckError('USAGE', (err as Error).message, { cause: err });
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 2) throw new PolicyCheckError('USAGE', 'policy check needs a source and a destination pod: <namespace>/<pod> <namespace>/<pod>');
  const [source, destination] = positionals as [string, string];
  parsePodRef(source, 'the source');
  parsePodRef(destination, 'the destination');
  const output = values.output;
  if (output !== 'text' && output !== 'json') throw new PolicyCheckError('USAGE', `-o must be text or json, not "${output}"`);
  const mtlsMode = values['mtls-mode'].toUpperCase();
  if (mtlsMode !== 'STRICT' && mtlsMode !== 'PERMISSIVE') throw new PolicyCheckError('USAGE', `--mtls-mode must be STRICT or PERMISSIVE, not "${values['mtls-mode']}"`);
  const headers = values.header.map((h): [string, string] => {
    const colon = h.indexOf(':');
    const name = colon > 0 ? h.slice(0, colon).trim() : '';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new PolicyCheckError('USAGE', `--header must be 'name: value', not "${h}"`);
    return [name, h.slice(colon + 1).trim()];
  });
  return {
    question: {
      source,
      destination,
      ...(values.port !== undefined ? { port: values.port } : {}),
      request: { method: values.method, path: values.path, ...(values.host !== undefined ? { host: values.host } : {}), headers },
    },
    settings: { installNamespace: values.namespace, trustDomain: values['trust-domain'], mtlsMode, captureNodeTraffic: !values['trust-node-traffic'] },
    output,
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.name !== undefined ? { playground: values.name } : {}),
  };
}

/** `weft policy ...`: runs the subcommand and returns the process's exit code. */
export async function policyCommand(argv: string[], o: { defaultPlayground: string; usage: string }): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub !== 'check') throw new PolicyCheckError('USAGE', sub === undefined ? 'policy needs a subcommand' : `unknown policy subcommand "${sub}"`);
    const args = parseCheckArgs(rest);
    const kc = await loadKubeconfig({ ...args, defaultPlayground: o.defaultPlayground }, (message, cause) => new PolicyCheckError('NO_CLUSTER', message, { cause }));
    const { objects, notes } = await readClusterObjects(kc, args.question.source, args.question.destination, args.settings.installNamespace);
    const check = explainPolicyCheck(objects, args.question, args.settings);
    check.notes.push(...notes);
    process.stdout.write(args.output === 'json' ? `${JSON.stringify(check, null, 2)}\n` : `${formatPolicyCheck(check)}\n`);
    return exitCodeOf(check);
  } catch (err) {
    if (err instanceof PolicyCheckError && err.code === 'USAGE') {
      process.stderr.write(`weft: ${err.message}\n${o.usage}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`weft: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.error;
  }
}
