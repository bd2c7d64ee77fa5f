// HTTPRoute (and GRPCRoute) objects with Service parents → the CompiledRoute agents apply, plus
// the status of each Service parent: pure, from the route and the Services.
//
// What the Gateway API asks of an implementation, and where it happens here:
// - a parentRef to a Service (group "" or "core", kind Service) is ours; Gateways are not;
// - a parent whose Service (or port) does not exist: Accepted=False, NoMatchingParent;
// - a filter or field Weft does not implement: Accepted=False, UnsupportedValue (the route is not
//   applied at all rather than applied without it);
// - a backendRef that is not a Service: ResolvedRefs=False, InvalidKind; to a Service or port that
//   does not exist: BackendNotFound. The route still applies, and that backend's share of the
//   requests answers 500.
// - a backendRef into another namespace needs no ReferenceGrant (GEP-1294, and the suite's
//   MeshConsumerRoute): a mesh route reaches nothing its clients could not reach directly, since
//   the routed request goes upstream with the client pod's own identity and the destination's
//   AccessPolicy judges that identity as it would a direct request.
import type { CompiledRoute, HeaderModifier, RouteBackend, RouteFilter, RouteKind, RouteMatch, RouteMirror, RouteParent, RouteRetryBudget, RouteRule } from '../../api/route.ts';
import type { Service } from '../../api/agent-sync.ts';
import type { Condition } from '../policy/status.ts';

/** The subset of a Gateway API route object read here (both HTTPRoute and GRPCRoute). */
export interface RouteObject {
  metadata?: { name?: string; namespace?: string; generation?: number; creationTimestamp?: Date | string; uid?: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { parentRefs?: ParentRef[]; rules?: RawRule[]; hostnames?: string[] };
  status?: { parents?: ParentStatus[] };
}

export interface ParentRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  sectionName?: string;
}

interface BackendRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
  filters?: RawFilter[];
}

interface RawFilter {
  type: string;
  requestMirror?: { backendRef?: BackendRef; percent?: number; fraction?: { numerator?: number; denominator?: number } };
  requestHeaderModifier?: RawModifier;
  responseHeaderModifier?: RawModifier;
  requestRedirect?: { scheme?: string; hostname?: string; port?: number; statusCode?: number; path?: RawPathModifier };
  urlRewrite?: { hostname?: string; path?: RawPathModifier };
}
interface RawModifier {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}
interface RawPathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

interface GrpcMethodMatch {
  type?: string;
  service?: string;
  method?: string;
}

interface RawRule {
  name?: string;
  matches?: {
    path?: { type?: string; value?: string };
    headers?: { type?: string; name: string; value: string }[];
    queryParams?: { type?: string; name: string; value: string }[];
    /** HTTPRoute: the HTTP method; GRPCRoute: the gRPC service and method. */
    method?: string | GrpcMethodMatch;
  }[];
  filters?: RawFilter[];
  backendRefs?: BackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { codes?: number[]; attempts?: number; backoff?: string };
}

export interface ParentStatus {
  parentRef: ParentRef;
  controllerName: string;
  conditions: Condition[];
}

export interface CompileInput {
  kind: RouteKind;
  route: RouteObject;
  service: (key: string) => Service | undefined;
  /** The retry budget an XBackendTrafficPolicy sets for a Service (backend-policy.ts), by its key. */
  retryBudget?: (key: string) => RouteRetryBudget | undefined;
}

/** What a parent's conditions say, before timestamps. */
export interface ParentVerdict {
  parentRef: ParentRef;
  accepted: Verdict;
  resolvedRefs: Verdict;
  /** weft.dev/Programmed: on how many of the nodes that need it the route is in force (programmed.ts); only for an accepted parent. */
  programmed?: Verdict;
}

export interface CompileResult {
  /** Undefined when no Service parent accepted it. */
  compiled: CompiledRoute | undefined;
  parents: ParentVerdict[];
}

export const isServiceRef = (r: { group?: string; kind?: string }): boolean => (r.group ?? '') === '' || r.group === 'core' ? (r.kind ?? 'Service') === 'Service' : false;

/** Gateway API durations: `1h`, `30s`, `500ms`, `1h30m`; undefined when it does not parse. */
export function parseDuration(d: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(d);
  if (!m || d === '') return undefined;
  const [, h, min, s, ms] = m;
  return Number(h ?? 0) * 3_600_000 + Number(min ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0);
}

const DEFAULT_RETRY_CODES = [500, 502, 503, 504];
const DEFAULT_RETRY_ATTEMPTS = 2;

/**
 * The route annotation that retries gRPC calls by their status. The Gateway API has no field for it
 * (GRPCRoute has no retry at all, HTTPRoute's retry reads HTTP codes), and a gRPC error is a 200
 * whose status comes in the trailers, so users of Linkerd and Istio name gRPC codes in their own
 * way; this is Weft's. Every rule of the route gets it: a rule with a `retry` keeps its attempts and
 * backoff, a rule without one retries twice (HTTPRoute's default) with no backoff, on these codes,
 * failed connects and backendRequest timeouts only.
 */
export const GRPC_RETRY_ANNOTATION = 'retry.weft.dev/grpc-codes';
/** gRPC status codes by name (grpc.io), 1-16: OK is never a failure. */
const GRPC_CODES = ['cancelled', 'unknown', 'invalid-argument', 'deadline-exceeded', 'not-found', 'already-exists', 'permission-denied', 'resource-exhausted', 'failed-precondition', 'aborted', 'out-of-range', 'unimplemented', 'internal', 'unavailable', 'data-loss', 'unauthenticated'];

/** "unavailable, RESOURCE_EXHAUSTED, 4" -> [14, 8, 4]; a problem for each name that is not a code. */
export function parseGrpcCodes(value: string): { codes: number[]; problems: string[] } {
  const codes: number[] = [];
  const problems: string[] = [];
  for (const raw of value.split(',').map((x) => x.trim()).filter((x) => x.length > 0)) {
    const n = /^\d+$/.test(raw) ? Number(raw) : GRPC_CODES.indexOf(raw.toLowerCase().replaceAll('_', '-')) + 1;
    if (n >= 1 && n <= 16) {
      if (!codes.includes(n)) codes.push(n);
    } else problems.push(`"${raw}" is not a gRPC status code (a name such as unavailable, or 1-16)`);
  }
  if (codes.length === 0 && problems.length === 0) problems.push('names no gRPC status code');
  return { codes, problems };
}

export function compileRoute(i: CompileInput): CompileResult {
  const meta = i.route.metadata ?? {};
  const ns = meta.namespace ?? '';
  const name = meta.name ?? '';
  const generation = meta.generation ?? 0;
  const unsupported: string[] = [];
  const refProblems: { reason: string; message: string }[] = [];
  const grpcRetry = meta.annotations?.[GRPC_RETRY_ANNOTATION];
  const grpcCodes = grpcRetry === undefined ? undefined : parseGrpcCodes(grpcRetry);
  for (const p of grpcCodes?.problems ?? []) unsupported.push(`metadata.annotations[${GRPC_RETRY_ANNOTATION}]: ${p}`);

  const rules: RouteRule[] = (i.route.spec?.rules ?? []).map((raw, index) => {
    const rulePath = `spec.rules[${index}]`;
    const matches = (raw.matches ?? []).map((m, j) => compileMatch(i.kind, m, `${rulePath}.matches[${j}]`, unsupported));
    const ruleMirrors: RouteMirror[] = [];
    const mirrorsOf = (list: RouteMirror[]) => ({ i, ns, refProblems, list });
    const filters = compileFilters(i.kind, raw.filters ?? [], `${rulePath}.filters`, unsupported, mirrorsOf(ruleMirrors));
    const backends = (raw.backendRefs ?? []).map((b, j): RouteBackend => {
      const backendMirrors: RouteMirror[] = [];
      const bf = compileFilters(i.kind, b.filters ?? [], `${rulePath}.backendRefs[${j}].filters`, unsupported, mirrorsOf(backendMirrors));
      const bns = b.namespace ?? ns;
      const backend: RouteBackend = { service: `${bns}/${b.name}`, port: b.port ?? 0, weight: b.weight ?? 1, filters: bf, ...(backendMirrors.length > 0 ? { mirrors: backendMirrors } : {}) };
      const problem = backendProblem(i, b, ns);
      if (problem) {
        refProblems.push({ reason: problem.reason, message: `${rulePath}.backendRefs[${j}] (${b.name}): ${problem.message}` });
        backend.invalid = `${problem.reason}: ${problem.message}`;
      } else {
        const budget = i.retryBudget?.(backend.service);
        if (budget) backend.retryBudget = budget;
      }
      return backend;
    });
    const rule: RouteRule = { name: raw.name ?? String(index), matches, filters, backends, ...(ruleMirrors.length > 0 ? { mirrors: ruleMirrors } : {}) };
    if (raw.timeouts) {
      const requestMs = raw.timeouts.request !== undefined ? parseDuration(raw.timeouts.request) : undefined;
      const backendRequestMs = raw.timeouts.backendRequest !== undefined ? parseDuration(raw.timeouts.backendRequest) : undefined;
      if (raw.timeouts.request !== undefined && requestMs === undefined) unsupported.push(`${rulePath}.timeouts.request: not a duration`);
      if (raw.timeouts.backendRequest !== undefined && backendRequestMs === undefined) unsupported.push(`${rulePath}.timeouts.backendRequest: not a duration`);
      // 0 means "no timeout" in the Gateway API.
      rule.timeouts = { ...(requestMs ? { requestMs } : {}), ...(backendRequestMs ? { backendRequestMs } : {}) };
    }
    if (raw.retry) {
      const backoffMs = raw.retry.backoff !== undefined ? parseDuration(raw.retry.backoff) : 0;
      if (backoffMs === undefined) unsupported.push(`${rulePath}.retry.backoff: not a duration`);
      rule.retry = { codes: raw.retry.codes ?? DEFAULT_RETRY_CODES, attempts: 1 + (raw.retry.attempts ?? DEFAULT_RETRY_ATTEMPTS), backoffMs: backoffMs ?? 0 };
    }
    if (grpcCodes && grpcCodes.codes.length > 0) rule.retry = { ...(rule.retry ?? { codes: [], attempts: 1 + DEFAULT_RETRY_ATTEMPTS, backoffMs: 0 }), grpcCodes: grpcCodes.codes };
    return rule;
  });

  const parents: ParentVerdict[] = [];
  const accepted: RouteParent[] = [];
  for (const ref of i.route.spec?.parentRefs ?? []) {
    if (!isServiceRef(ref)) continue;
    const pns = ref.namespace ?? ns;
    const svc = i.service(`${pns}/${ref.name}`);
    let acc = { ok: true, reason: 'Accepted', message: ns === pns ? 'producer route: applies to every client of the Service' : `consumer route: applies to clients in namespace ${ns} only` };
    if (!svc) acc = { ok: false, reason: 'NoMatchingParent', message: `Service ${pns}/${ref.name} not found` };
    else if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port && p.protocol === 'TCP')) acc = { ok: false, reason: 'NoMatchingParent', message: `Service ${pns}/${ref.name} has no TCP port ${ref.port}` };
    else if (ref.sectionName !== undefined) acc = { ok: false, reason: 'UnsupportedValue', message: 'sectionName on a Service parent is not supported: use port' };
    else if (unsupported.length > 0) acc = { ok: false, reason: 'UnsupportedValue', message: unsupported.slice(0, 5).join('; ') };
    const resolved = refProblems.length === 0 ? { ok: true, reason: 'ResolvedRefs', message: 'every backendRef resolved' } : { ok: false, reason: refProblems[0]?.reason ?? 'BackendNotFound', message: refProblems.map((p) => p.message).slice(0, 5).join('; ') };
    parents.push({ parentRef: ref, accepted: acc, resolvedRefs: resolved });
    if (acc.ok) accepted.push({ service: `${pns}/${ref.name}`, ...(ref.port !== undefined ? { port: ref.port } : {}) });
  }

  if (accepted.length === 0) return { compiled: undefined, parents };
  const created = meta.creationTimestamp instanceof Date ? meta.creationTimestamp.toISOString() : (meta.creationTimestamp ?? '');
  return {
    compiled: { key: `${i.kind}/${ns}/${name}`, kind: i.kind, namespace: ns, name, generation, created, parents: accepted, rules },
    parents,
  };
}

function backendProblem(i: CompileInput, b: BackendRef, routeNs: string): { reason: string; message: string } | undefined {
  if (!isServiceRef(b)) return { reason: 'InvalidKind', message: `${b.group ?? ''}/${b.kind ?? ''} is not a supported backend kind (Service is)` };
  const bns = b.namespace ?? routeNs;
  const svc = i.service(`${bns}/${b.name}`);
  if (!svc) return { reason: 'BackendNotFound', message: `Service ${bns}/${b.name} not found` };
  if (b.port === undefined) return { reason: 'BackendNotFound', message: 'a Service backendRef needs a port' };
  if (!svc.ports.some((p) => p.port === b.port && p.protocol === 'TCP')) return { reason: 'BackendNotFound', message: `Service ${bns}/${b.name} has no TCP port ${b.port}` };
  return undefined;
}


function compileMatch(kind: RouteKind, m: NonNullable<RawRule['matches']>[number], p: string, unsupported: string[]): RouteMatch {
  const out: RouteMatch = { headers: [], queryParams: [] };
  if (kind === 'GRPCRoute') {
    if (typeof m.method === 'object') {
      const path = grpcPath(m.method, `${p}.method`, unsupported);
      if (path) out.path = path;
    }
  } else if (m.path) {
    const type = m.path.type ?? 'PathPrefix';
    if (type !== 'Exact' && type !== 'PathPrefix' && type !== 'RegularExpression') unsupported.push(`${p}.path.type: ${type}`);
    else out.path = { type, value: m.path.value ?? '/' };
    if (type === 'RegularExpression' && !validRegex(m.path.value ?? '')) unsupported.push(`${p}.path.value: not a regular expression Weft can run`);
  }
  for (const [field, list] of [['headers', m.headers ?? []], ['queryParams', m.queryParams ?? []]] as const) {
    list.forEach((h, k) => {
      const type = h.type ?? 'Exact';
      if (type !== 'Exact' && type !== 'RegularExpression') return void unsupported.push(`${p}.${field}[${k}].type: ${type}`);
      if (type === 'RegularExpression' && !validRegex(h.value)) return void unsupported.push(`${p}.${field}[${k}].value: not a regular expression Weft can run`);
      out[field].push({ type, name: field === 'headers' ? h.name.toLowerCase() : h.name, value: h.value });
    });
  }
  if (kind === 'HTTPRoute' && typeof m.method === 'string') out.method = m.method;
  return out;
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A gRPC method match as the path match it is: gRPC calls `/<package.Service>/<Method>`. Exact
 * service and method is an Exact path, a service alone a prefix (whole segment), anything else a
 * regular expression. Precedence then follows the path's: Exact before a regular expression before
 * a prefix, which differs from GRPCRoute's (more service characters first) only when a rule matches a
 * method alone and another a service alone.
 */
function grpcPath(mm: GrpcMethodMatch, p: string, unsupported: string[]): RouteMatch['path'] | undefined {
  const type = mm.type ?? 'Exact';
  const { service, method } = mm;
  if (service === undefined && method === undefined) return undefined;
  if (type === 'Exact') {
    if ((service !== undefined && service.includes('/')) || (method !== undefined && method.includes('/'))) {
      unsupported.push(`${p}: a service or method name cannot hold '/'`);
      return undefined;
    }
    if (service !== undefined && method !== undefined) return { type: 'Exact', value: `/${service}/${method}` };
    if (service !== undefined) return { type: 'PathPrefix', value: `/${service}` };
    return { type: 'RegularExpression', value: `/[^/]+/${escapeRegex(method ?? '')}` };
  }
  if (type !== 'RegularExpression') {
    unsupported.push(`${p}.type: ${type}`);
    return undefined;
  }
  for (const [field, v] of [['service', service], ['method', method]] as const) {
    if (v !== undefined && !validRegex(v)) {
      unsupported.push(`${p}.${field}: not a regular expression Weft can run`);
      return undefined;
    }
  }
  return { type: 'RegularExpression', value: `/(?:${service ?? '[^/]+'})/(?:${method ?? '[^/]+'})` };
}

/**
 * Whether the agents can run this pattern safely. JavaScript's engine backtracks, and a route may
 * come from any namespace (a consumer route): a pattern with a quantified group that itself holds
 * a quantifier (`(a+)+`, `(x*y?)*`) can take exponential time on one crafted path and stall the
 * node agent for every pod on the node. Those are refused, as are backreferences and lookarounds
 * (not in RE2, the syntax most implementations accept) and patterns over 1 KiB. A heuristic: it
 * does not catch every ambiguous pattern (overlapping alternatives such as `(a|aa){2,}` pass).
 */
export function validRegex(re: string): boolean {
  if (re.length > 1024) return false;
  if (/\\[1-9]|\\k<|\(\?<?[=!]/.test(re)) return false;
  if (nestedQuantifier(re)) return false;
  try {
    new RegExp(re);
    return true;
  } catch {
    return false;
  }
}

/** A group that contains a quantifier and is itself quantified. */
function nestedQuantifier(re: string): boolean {
  // Per open group: whether a quantifier appeared inside it.
  const stack: boolean[] = [];
  let inClass = false;
  for (let i = 0; i < re.length; i++) {
    const c = re[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') stack.push(false);
    else if (c === ')') {
      const inner = stack.pop() ?? false;
      const next = re[i + 1];
      const quantified = next === '*' || next === '+' || next === '?' || next === '{';
      if (inner && quantified && next !== '?') return true;
      if (stack.length > 0 && (inner || quantified)) stack[stack.length - 1] = true;
    } else if ((c === '*' || c === '+' || c === '?' || c === '{') && stack.length > 0) stack[stack.length - 1] = true;
  }
  return false;
}

function modifier(m: RawModifier | undefined): HeaderModifier {
  return { set: m?.set ?? [], add: m?.add ?? [], remove: m?.remove ?? [] };
}

function pathModifier(pm: RawPathModifier | undefined): { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } | undefined {
  if (!pm) return undefined;
  return pm.type === 'ReplaceFullPath' ? { type: pm.type, value: pm.replaceFullPath ?? '/' } : { type: 'ReplacePrefixMatch', value: pm.replacePrefixMatch ?? '/' };
}

/** Where compileFilters puts the RequestMirror filters of one list, resolved against the Services. */
interface MirrorSink {
  i: CompileInput;
  ns: string;
  refProblems: { reason: string; message: string }[];
  list: RouteMirror[];
}

/**
 * A RequestMirror's share: `percent`, or `fraction` (denominator 100 unless given), or every
 * request. A mirror whose backendRef does not resolve makes ResolvedRefs False and is left out;
 * the route still applies (the Gateway API's rule for a backendRef that does not resolve, less the
 * 500s: a copy's answer is never seen).
 */
function compileMirror(f: NonNullable<RawFilter['requestMirror']>, p: string, unsupported: string[], sink: MirrorSink): void {
  const b = f.backendRef;
  if (!b?.name) return void unsupported.push(`${p}.backendRef: required`);
  let numerator = 1;
  let denominator = 1;
  if (f.percent !== undefined && f.fraction !== undefined) return void unsupported.push(`${p}: percent and fraction are exclusive`);
  if (f.percent !== undefined) {
    if (!Number.isInteger(f.percent) || f.percent < 0 || f.percent > 100) return void unsupported.push(`${p}.percent: must be 0 to 100`);
    [numerator, denominator] = [f.percent, 100];
  } else if (f.fraction !== undefined) {
    const n = f.fraction.numerator ?? 0;
    const d = f.fraction.denominator ?? 100;
    if (!Number.isInteger(n) || !Number.isInteger(d) || n < 0 || d < 1 || n > d) return void unsupported.push(`${p}.fraction: needs 0 <= numerator <= denominator, denominator >= 1`);
    [numerator, denominator] = [n, d];
  }
  const problem = backendProblem(sink.i, b, sink.ns);
  if (problem) return void sink.refProblems.push({ reason: problem.reason, message: `${p}.backendRef (${b.name}): ${problem.message}` });
  sink.list.push({ service: `${b.namespace ?? sink.ns}/${b.name}`, port: b.port ?? 0, numerator, denominator });
}

function compileFilters(kind: RouteKind, raw: RawFilter[], p: string, unsupported: string[], mirrors: MirrorSink): RouteFilter[] {
  const out: RouteFilter[] = [];
  raw.forEach((f, k) => {
    if (f.type === 'RequestMirror') {
      if (mirrors.list.length >= 16) return void unsupported.push(`${p}[${k}]: more than 16 RequestMirror filters`);
      return compileMirror(f.requestMirror ?? {}, `${p}[${k}].requestMirror`, unsupported, mirrors);
    }
    // GRPCRoute's schema has no redirect or rewrite; an object that has one came past no CRD.
    if (kind === 'GRPCRoute' && f.type !== 'RequestHeaderModifier' && f.type !== 'ResponseHeaderModifier') return void unsupported.push(`${p}[${k}].type: ${f.type} is not implemented by Weft for GRPCRoute`);
    switch (f.type) {
      case 'RequestHeaderModifier':
        out.push({ type: 'RequestHeaderModifier', modifier: modifier(f.requestHeaderModifier) });
        break;
      case 'ResponseHeaderModifier':
        out.push({ type: 'ResponseHeaderModifier', modifier: modifier(f.responseHeaderModifier) });
        break;
      case 'RequestRedirect': {
        const r = f.requestRedirect ?? {};
        const path = pathModifier(r.path);
        out.push({
          type: 'RequestRedirect',
          statusCode: r.statusCode ?? 302,
          ...(r.scheme !== undefined ? { scheme: r.scheme } : {}),
          ...(r.hostname !== undefined ? { hostname: r.hostname } : {}),
          ...(r.port !== undefined ? { port: r.port } : {}),
          ...(path ? { path } : {}),
        });
        break;
      }
      case 'URLRewrite': {
        const path = pathModifier(f.urlRewrite?.path);
        out.push({ type: 'URLRewrite', ...(f.urlRewrite?.hostname !== undefined ? { hostname: f.urlRewrite.hostname } : {}), ...(path ? { path } : {}) });
        break;
      }
      default:
        unsupported.push(`${p}[${k}].type: ${f.type} is not implemented by Weft`);
    }
  });
  return out;
}

export interface Verdict {
  ok: boolean;
  reason: string;
  message: string;
}

/** A condition of `type` saying `c`; its lastTransitionTime kept from `previous` if its status did not change. */
export function condition(type: string, c: Verdict, generation: number, previous: readonly Condition[] | undefined, now: Date): Condition {
  const status = c.ok ? 'True' : 'False';
  const prev = previous?.find((x) => x.type === type);
  const lastTransitionTime = prev && prev.status === status ? prev.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, 'Z');
  return { type, status, reason: c.reason, message: c.message.slice(0, 1024), observedGeneration: generation, lastTransitionTime };
}

/** The status entries Weft owns, with timestamps kept where a condition did not change. */
export function parentStatuses(verdicts: readonly ParentVerdict[], generation: number, controllerName: string, previous: readonly ParentStatus[], now: Date): ParentStatus[] {
  return verdicts.map((v) => {
    const before = previous.find((p) => p.controllerName === controllerName && sameRef(p.parentRef, v.parentRef));
    const cond = (type: string, c: Verdict): Condition => condition(type, c, generation, before?.conditions, now);
    const conditions = [cond('Accepted', v.accepted), cond('ResolvedRefs', v.resolvedRefs)];
    if (v.programmed) conditions.push(cond('weft.dev/Programmed', v.programmed));
    return { parentRef: v.parentRef, controllerName, conditions };
  });
}

export function sameRef(a: ParentRef, b: ParentRef): boolean {
  return (a.group ?? '') === (b.group ?? '') && (a.kind ?? 'Service') === (b.kind ?? 'Service') && a.name === b.name && (a.namespace ?? '') === (b.namespace ?? '') && a.port === b.port && a.sectionName === b.sectionName;
}
