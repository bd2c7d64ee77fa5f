// Routes as agents receive them: a Gateway API HTTPRoute or GRPCRoute with Service parents,
// compiled by the controller (controller/route/compile.ts) into the few fields the client's node
// agent acts on (agent/route/). Names, namespaces and ports are resolved; durations are
// milliseconds; a backendRef the controller could not resolve stays in the list as `invalid`, so
// that its share of the weight answers 500 as the Gateway API asks, instead of moving to the others.

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_VERSION = 'v1';
/** The controllerName Weft writes its per-parent route status under. */
export const ROUTE_CONTROLLER_NAME = 'weft.dev/mesh-controller';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';

export interface StringMatch {
  type: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface PathMatch {
  type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value: string;
}

export interface RouteMatch {
  path?: PathMatch;
  headers: StringMatch[];
  queryParams: StringMatch[];
  method?: string;
}

export interface HeaderModifier {
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export type RouteFilter =
  | { type: 'RequestHeaderModifier'; modifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; modifier: HeaderModifier }
  | {
      type: 'RequestRedirect';
      scheme?: string;
      hostname?: string;
      port?: number;
      path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string };
      statusCode: number;
    }
  | { type: 'URLRewrite'; hostname?: string; path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } };

export interface RouteBackend {
  /** `<namespace>/<service>`; the Service port is `port`. */
  service: string;
  port: number;
  weight: number;
  filters: RouteFilter[];
  /** Why the controller could not resolve it (requests given to it answer 500). */
  invalid?: string;
  /** RequestMirror filters of this backendRef (see RouteRule.mirrors). */
  mirrors?: RouteMirror[];
  /**
   * The retry budget an XBackendTrafficPolicy sets for the Service: one budget per client agent
   * for every route and rule that sends to it, in place of the rule's own. An agent older than
   * the field keeps the rule's.
   */
  retryBudget?: RouteRetryBudget;
}

/**
 * An XBackendTrafficPolicy's `retryConstraint`: retries to the Service may be `percent` % of the
 * requests sent to it in the last `intervalMs`, plus `minCount` per `minIntervalMs` (scaled to
 * `intervalMs`) however few requests there were.
 */
export interface RouteRetryBudget {
  /** `<namespace>/<name>` of the policy. */
  policy: string;
  percent: number;
  intervalMs: number;
  minCount: number;
  minIntervalMs: number;
}

/**
 * A RequestMirror filter: a copy of `numerator`/`denominator` of the requests goes to the Service
 * port, its answer discarded. Kept apart from `filters` (which an agent checks strictly) so that an
 * agent older than mirroring routes as before, only without the copies, instead of refusing the
 * whole update while the controller is upgraded ahead of it.
 */
export interface RouteMirror {
  /** `<namespace>/<service>` */
  service: string;
  port: number;
  numerator: number;
  denominator: number;
}

export interface RouteRetry {
  /** HTTP status codes that are retried; connection failures always are. */
  codes: number[];
  /**
   * gRPC status codes that are retried when a call fails before any of its answer (a
   * trailers-only response: the status in the response's only HEADERS frame). From the route's
   * `retry.weft.dev/grpc-codes` annotation; an agent older than it ignores the field.
   */
  grpcCodes?: number[];
  /** Attempts in total, the first included. */
  attempts: number;
  backoffMs: number;
}

export interface RouteRule {
  /** `rules[].name`, or the rule's index. */
  name: string;
  /** Empty: every request (the Gateway API's default match is the prefix `/`). */
  matches: RouteMatch[];
  filters: RouteFilter[];
  backends: RouteBackend[];
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  retry?: RouteRetry;
  /** RequestMirror filters of the rule; a mirror whose backendRef did not resolve is left out. */
  mirrors?: RouteMirror[];
}

export interface RouteParent {
  /** `<namespace>/<service>` */
  service: string;
  /** The Service port; absent: every port of the Service. */
  port?: number;
}

export interface CompiledRoute {
  /** `<kind>/<namespace>/<name>` */
  key: string;
  kind: RouteKind;
  namespace: string;
  name: string;
  generation: number;
  /** RFC 3339; ties between equally specific rules go to the oldest route. */
  created: string;
  /** The parents it is accepted for. A route in another namespace than its Service is a consumer route: only its own namespace's clients see it. */
  parents: RouteParent[];
  rules: RouteRule[];
}

// ---- validation where the data enters ---------------------------------------------------------

type Json = unknown;
const isObj = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: Json): v is string => typeof v === 'string';
const isInt = (v: Json): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export class RouteWireError extends Error {
  readonly code = 'PROTOCOL_ERROR';
  override readonly name = 'RouteWireError';
}

function need(cond: boolean, path: string, what: string): asserts cond {
  if (!cond) throw new RouteWireError(`${path}: ${what}`);
}

// A regular expression is compiled on the agent: one that does not compile is refused here,
// never at request time.
function checkRegex(v: string, p: string): void {
  try {
    new RegExp(v);
  } catch {
    need(false, p, 'is not a valid regular expression');
  }
}

function checkStringMatch(v: Json, p: string): void {
  need(isObj(v) && (v.type === 'Exact' || v.type === 'RegularExpression') && isStr(v.name) && isStr(v.value), p, 'must have type, name, value');
  if (v.type === 'RegularExpression') checkRegex(v.value, `${p}.value`);
}

function checkModifier(v: Json, p: string): void {
  need(isObj(v), p, 'must be an object');
  for (const f of ['set', 'add'] as const) need(Array.isArray(v[f]) && (v[f] as Json[]).every((h) => isObj(h) && isStr(h.name) && isStr(h.value)), `${p}.${f}`, 'must list name/value pairs');
  need(Array.isArray(v.remove) && v.remove.every(isStr), `${p}.remove`, 'must list header names');
}

function checkPathModifier(v: Json, p: string): void {
  need(v === undefined || (isObj(v) && (v.type === 'ReplaceFullPath' || v.type === 'ReplacePrefixMatch') && isStr(v.value)), p, 'must have type and value');
}

function checkMirrors(v: Json, p: string): void {
  need(v === undefined || (Array.isArray(v) && v.length <= 16), p, 'must be a list of at most 16 mirrors');
  (v ?? []).forEach((m: Json, i: number) => {
    need(isObj(m) && isStr(m.service) && isInt(m.port) && isInt(m.numerator) && isInt(m.denominator) && m.denominator >= 1 && m.numerator <= m.denominator, `${p}[${i}]`, 'must have service, port, numerator <= denominator');
  });
}

function checkRetryBudget(v: Json, p: string): void {
  if (v === undefined) return;
  need(isObj(v) && isStr(v.policy) && isInt(v.percent) && v.percent <= 100, p, 'must have policy and percent 0-100');
  need(isInt(v.intervalMs) && v.intervalMs >= 1 && isInt(v.minCount) && isInt(v.minIntervalMs) && v.minIntervalMs >= 1, p, 'must have intervalMs, minCount, minIntervalMs');
}

function checkFilter(v: Json, p: string): void {
  need(isObj(v), p, 'must be an object');
  switch (v.type) {
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier':
      return checkModifier(v.modifier, `${p}.modifier`);
    case 'RequestRedirect':
      need(isInt(v.statusCode), `${p}.statusCode`, 'must be a number');
      need(v.port === undefined || isInt(v.port), `${p}.port`, 'must be a number');
      return checkPathModifier(v.path, `${p}.path`);
    case 'URLRewrite':
      return checkPathModifier(v.path, `${p}.path`);
    default:
      need(false, `${p}.type`, `unknown filter ${String(JSON.stringify(v.type)).slice(0, 40)}`);
  }
}

export function checkCompiledRoute(v: Json, p: string): CompiledRoute {
  need(isObj(v), p, 'must be an object');
  for (const f of ['key', 'namespace', 'name', 'created'] as const) need(isStr(v[f]), `${p}.${f}`, 'must be a string');
  need(v.kind === 'HTTPRoute' || v.kind === 'GRPCRoute', `${p}.kind`, 'must be HTTPRoute or GRPCRoute');
  need(isInt(v.generation), `${p}.generation`, 'must be a number');
  need(Array.isArray(v.parents) && v.parents.every((x: Json) => isObj(x) && isStr(x.service) && (x.port === undefined || isInt(x.port))), `${p}.parents`, 'must list services');
  need(Array.isArray(v.rules), `${p}.rules`, 'must be a list');
  v.rules.forEach((r: Json, i: number) => {
    const rp = `${p}.rules[${i}]`;
    need(isObj(r) && isStr(r.name) && Array.isArray(r.matches) && Array.isArray(r.filters) && Array.isArray(r.backends), rp, 'must have name, matches, filters, backends');
    r.matches.forEach((m: Json, j: number) => {
      const mp = `${rp}.matches[${j}]`;
      need(isObj(m) && Array.isArray(m.headers) && Array.isArray(m.queryParams), mp, 'must have headers and queryParams');
      need(m.method === undefined || isStr(m.method), `${mp}.method`, 'must be a string');
      if (m.path !== undefined) {
        need(isObj(m.path) && (m.path.type === 'Exact' || m.path.type === 'PathPrefix' || m.path.type === 'RegularExpression') && isStr(m.path.value), `${mp}.path`, 'must have type and value');
        if (m.path.type === 'RegularExpression') checkRegex(m.path.value, `${mp}.path.value`);
      }
      m.headers.forEach((h: Json, k: number) => checkStringMatch(h, `${mp}.headers[${k}]`));
      m.queryParams.forEach((h: Json, k: number) => checkStringMatch(h, `${mp}.queryParams[${k}]`));
    });
    r.filters.forEach((f: Json, j: number) => checkFilter(f, `${rp}.filters[${j}]`));
    r.backends.forEach((b: Json, j: number) => {
      const bp = `${rp}.backends[${j}]`;
      need(isObj(b) && isStr(b.service) && isInt(b.port) && isInt(b.weight) && Array.isArray(b.filters), bp, 'must have service, port, weight, filters');
      need(b.invalid === undefined || isStr(b.invalid), `${bp}.invalid`, 'must be a string');
      b.filters.forEach((f: Json, k: number) => checkFilter(f, `${bp}.filters[${k}]`));
      checkMirrors(b.mirrors, `${bp}.mirrors`);
      checkRetryBudget(b.retryBudget, `${bp}.retryBudget`);
    });
    checkMirrors(r.mirrors, `${rp}.mirrors`);
    if (r.timeouts !== undefined) {
      need(isObj(r.timeouts) && (r.timeouts.requestMs === undefined || isInt(r.timeouts.requestMs)) && (r.timeouts.backendRequestMs === undefined || isInt(r.timeouts.backendRequestMs)), `${rp}.timeouts`, 'must hold millisecond counts');
    }
    if (r.retry !== undefined) {
      need(isObj(r.retry) && Array.isArray(r.retry.codes) && r.retry.codes.every(isInt) && isInt(r.retry.attempts) && isInt(r.retry.backoffMs), `${rp}.retry`, 'must have codes, attempts, backoffMs');
      need(r.retry.grpcCodes === undefined || (Array.isArray(r.retry.grpcCodes) && r.retry.grpcCodes.every(isInt)), `${rp}.retry.grpcCodes`, 'must be gRPC status codes');
    }
  });
  return v as unknown as CompiledRoute;
}
