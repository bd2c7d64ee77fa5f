// `weft route check`: where a request from a client namespace to a Service goes under the mesh's
// Gateway API routes — which route and rule take it, what its filters do, and which backends share
// it — without sending it. A gRPC call (`grpc://svc.ns:port/pkg.Service/Method`, or an http:// URL
// with a `content-type: application/grpc` header) is matched against GRPCRoutes and HTTPRoutes,
// as the agent matches one; any other request against HTTPRoutes only.
//
// Like `weft policy check`, it owns no routing logic, so it cannot disagree with the mesh: routes
// are compiled by the controller's compile.ts (the same status verdicts), Services computed by the
// controller's compute.ts, the routes that apply to the client chosen by the agent's table.ts,
// and the rule by the agent's match.ts, as the client's node agent does per request
// (agent/route/proxy.ts).
//
// Two halves: `explainRouteCheck` is pure (Kubernetes objects in, explanation out) and is what the
// tests drive; `routeCommand` is the I/O around it.
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice, type V1Service } from '@kubernetes/client-node';
import type { Service } from '../api/agent-sync.ts';
import { apiErrorSummary, httpStatus } from '../api/kube-errors.ts';
import { GATEWAY_GROUP, type CompiledRoute, type RouteFilter, type RouteKind, type RouteMirror, type RouteRetryBudget } from '../api/route.ts';
import { isGrpc } from '../agent/l7/request-info.ts';
import { redirectLocation, rewritePath } from '../agent/route/filters.ts';
import { findEntry, flatten, splitTarget } from '../agent/route/match.ts';
import { DEFAULT_RETRY_BUDGET } from '../agent/route/select.ts';
import { indexRoutes, routesFor } from '../agent/route/table.ts';
import { compileBackendPolicies, POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION, type BackendPolicyObject } from '../controller/route/backend-policy.ts';
import { compileRoute, type RouteObject } from '../controller/route/compile.ts';
import { computeService } from '../controller/state/compute.ts';
import { loadKubeconfig } from './policy-check.ts';

export interface RouteQuestion {
  /** The client's namespace (only the namespace decides which routes apply). */
  from: string;
  /**
   * `http://<service>[.<namespace>[.svc[.<domain>]]][:port]/path?query`, or the Service's cluster IP
   * as host; or `grpc://<service>...:<port>/<package.Service>/<Method>` for a gRPC call.
   */
  url: string;
  method: string;
  headers: [string, string][];
}

export interface RouteObjects {
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  httpRoutes: RouteObject[];
  grpcRoutes?: RouteObject[];
  /** XBackendTrafficPolicies: the retry budgets of backend Services. */
  backendPolicies?: BackendPolicyObject[];
}

export interface RouteBackendShare {
  backend: string;
  weight: number;
  /** Percent of the rule's requests, by weight. */
  share: number;
  readyEndpoints: number;
  /** Why requests given to it answer 500 (the controller could not resolve it). */
  invalid?: string;
  /** The retry budget an XBackendTrafficPolicy sets for it (else the rule's own, Weft's default). */
  retryBudget?: RouteRetryBudget;
}

export interface RouteCheck {
  service: string;
  port: number;
  /** Whether it was checked as a gRPC call (GRPCRoutes apply to those only). */
  grpc: boolean;
  /** routed: a rule takes it; unrouted: no route applies (plain L4 to the Service); no-match: 404; redirect. */
  outcome: 'routed' | 'unrouted' | 'no-match' | 'redirect' | 'no-service';
  /** producer or consumer routes, when routes apply. */
  routes?: { kind: 'producer' | 'consumer'; keys: string[] };
  route?: string;
  rule?: string;
  /** The winning match, as the route says it. */
  match?: string;
  redirect?: { status: number; location: string };
  /** The upstream request's path after URLRewrite, and its Host. */
  upstream?: { path: string; host?: string };
  filters: string[];
  /** RequestMirror filters that apply: where copies go, and what share of the requests. */
  mirrors: { backend: string; percent: number; readyEndpoints: number; onlyFor?: string }[];
  backends: RouteBackendShare[];
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  retry?: { codes: number[]; attempts: number; backoffMs: number; grpcCodes?: number[] };
  /** Routes for this Service that the controller would not apply, and why. */
  refused: string[];
  notes: string[];
}

/** The Service a URL's host names (a cluster IP, or a DNS name in the cluster's forms). */
function findService(services: V1Service[], host: string, from: string): V1Service | undefined {
  const byIP = services.find((s) => (s.spec?.clusterIPs ?? [s.spec?.clusterIP]).includes(host));
  if (byIP) return byIP;
  const parts = host.split('.');
  const name = parts[0] ?? '';
  // `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster domain>`.
  const ns = parts.length === 1 ? from : parts[1];
  if (parts.length > 2 && parts[2] !== 'svc') return undefined;
  return services.find((s) => s.metadata?.name === name && s.metadata.namespace === ns);
}

function describeFilter(f: RouteFilter): string {
  switch (f.type) {
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier': {
      const m = f.modifier;
      const parts = [...m.set.map((h) => `set ${h.name}: ${h.value}`), ...m.add.map((h) => `add ${h.name}: ${h.value}`), ...m.remove.map((h) => `remove ${h}`)];
      return `${f.type}: ${parts.join(', ')}`;
    }
    case 'URLRewrite':
      return `URLRewrite:${f.hostname !== undefined ? ` host ${f.hostname}` : ''}${f.path ? ` ${f.path.type} ${f.path.value}` : ''}`;
    case 'RequestRedirect':
      return `RequestRedirect ${f.statusCode}`;
  }
}

export function explainRouteCheck(objects: RouteObjects, q: RouteQuestion): RouteCheck {
  let url: URL;
  try {
    url = new URL(q.url);
  } catch {
    throw new RouteCheckError('USAGE', `not a URL: "${q.url}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'grpc:') throw new RouteCheckError('USAGE', `only http:// and grpc:// URLs are routed, not ${url.protocol}`);
  if (url.protocol === 'grpc:' && (url.port === '' || !/^\/[^/]+\/[^/]+$/.test(url.pathname))) throw new RouteCheckError('USAGE', 'a gRPC call is grpc://<service>.<namespace>:<port>/<package.Service>/<Method>');
  const grpc = url.protocol === 'grpc:' || isGrpc(q.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1]);
  const port = url.port === '' ? 80 : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const check: RouteCheck = { service: '', port, grpc, outcome: 'no-service', filters: [], mirrors: [], backends: [], refused: [], notes: [] };
  const svcObject = findService(objects.services, host, q.from);
  if (!svcObject) {
    check.notes.push(`no Service answers to ${host}`);
    return check;
  }
  const services = new Map<string, Service>();
  for (const s of objects.services) {
    const c = computeService(s, objects.endpointSlices);
    if (c) services.set(c.key, c);
  }
  const target = services.get(`${svcObject.metadata?.namespace ?? ''}/${svcObject.metadata?.name ?? ''}`);
  if (!target) {
    check.notes.push(`Service ${svcObject.metadata?.namespace ?? ''}/${svcObject.metadata?.name ?? ''} is not one the mesh routes (ExternalName?)`);
    return check;
  }
  check.service = target.key;
  if (!target.ports.some((p) => p.port === port && p.protocol === 'TCP')) check.notes.push(`Service ${target.key} has no TCP port ${port}`);

  const compiled: CompiledRoute[] = [];
  const kinds: [RouteKind, RouteObject[]][] = [
    ['HTTPRoute', objects.httpRoutes],
    ['GRPCRoute', objects.grpcRoutes ?? []],
  ];
  const { budgets } = compileBackendPolicies(objects.backendPolicies ?? [], (k) => services.get(k));
  for (const [kind, list] of kinds) {
    for (const route of list) {
      const r = compileRoute({ kind, route, service: (k) => services.get(k), retryBudget: (k) => budgets.get(k) });
      const mine = r.parents.filter((p) => `${p.parentRef.namespace ?? route.metadata?.namespace ?? ''}/${p.parentRef.name}` === target.key);
      for (const p of mine) if (!p.accepted.ok) check.refused.push(`${kind}/${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}: ${p.accepted.reason}: ${p.accepted.message}`);
      if (r.compiled) compiled.push(r.compiled);
    }
  }
  const applying = routesFor(indexRoutes(compiled).get(target.key), q.from, target.key, port);
  if (applying.routes.length === 0) {
    check.outcome = 'unrouted';
    check.notes.push(`no route applies to clients in ${q.from} on ${target.key}:${port}: the connection stays L4, to the Service's endpoints`);
    return check;
  }
  check.routes = { kind: applying.kind, keys: applying.routes.map((r) => r.key) };
  // As the agent's table.ts: GRPCRoutes take gRPC calls only.
  const candidates = grpc ? applying.routes : applying.routes.filter((r) => r.kind === 'HTTPRoute');
  if (candidates.length === 0) {
    check.outcome = 'unrouted';
    check.notes.push(`only GRPCRoutes apply to ${target.key}:${port} and this is not a gRPC call (no content-type: application/grpc): the agent sends it to the Service itself, unrouted`);
    return check;
  }
  const { path, query } = splitTarget(`${url.pathname}${url.search}`);
  const headers: Record<string, string> = { host: url.host };
  if (url.protocol === 'grpc:') headers['content-type'] = 'application/grpc';
  for (const [k, v] of q.headers) headers[k.toLowerCase()] = headers[k.toLowerCase()] !== undefined ? `${headers[k.toLowerCase()]},${v}` : v;
  const method = url.protocol === 'grpc:' ? 'POST' : q.method.toUpperCase();
  const entry = findEntry(flatten(candidates), { method, path, query, headers });
  if (!entry) {
    check.outcome = 'no-match';
    check.notes.push('routes apply but no rule matches: the agent answers 404');
    return check;
  }
  check.route = entry.route.key;
  check.rule = entry.rule.name;
  const m = entry.match;
  check.match = [
    m.path ? `path ${m.path.type} ${m.path.value}` : '',
    m.method ? `method ${m.method}` : '',
    ...m.headers.map((h) => `header ${h.name} ${h.type} ${h.value}`),
    ...m.queryParams.map((h) => `query ${h.name} ${h.type} ${h.value}`),
  ]
    .filter((s) => s !== '')
    .join(', ');
  if (entry.rule.timeouts) check.timeouts = entry.rule.timeouts;
  if (entry.rule.retry) check.retry = entry.rule.retry;
  let upstreamPath = path;
  let upstreamHost: string | undefined;
  for (const f of entry.rule.filters) {
    check.filters.push(describeFilter(f));
    if (f.type === 'RequestRedirect') {
      check.outcome = 'redirect';
      check.redirect = redirectLocation(f, { host: url.host, path, query }, m);
      return check;
    }
    if (f.type === 'URLRewrite') {
      if (f.path) upstreamPath = rewritePath(path, f.path, m);
      if (f.hostname !== undefined) upstreamHost = f.hostname;
    }
  }
  const total = entry.rule.backends.reduce((a, b) => a + Math.max(0, b.weight), 0);
  check.backends = entry.rule.backends.map((b) => {
    const svc = services.get(b.service);
    const sp = svc?.ports.find((p) => p.port === b.port && p.protocol === 'TCP');
    return {
      backend: `${b.service}:${b.port}`,
      weight: b.weight,
      share: total > 0 ? Math.round((Math.max(0, b.weight) / total) * 1000) / 10 : 0,
      readyEndpoints: sp ? (svc?.endpoints.filter((e) => e.ready && e.ports[sp.name] !== undefined).length ?? 0) : 0,
      ...(b.invalid !== undefined ? { invalid: b.invalid } : {}),
      ...(b.retryBudget ? { retryBudget: b.retryBudget } : {}),
    };
  });
  // Backend-level filters apply only to requests given to that backend: listed with it.
  entry.rule.backends.forEach((b, i) => {
    for (const f of b.filters) check.filters.push(`${check.backends[i]?.backend ?? ''} only: ${describeFilter(f)}`);
  });
  const mirror = (m: RouteMirror, onlyFor?: string) => {
    const svc = services.get(m.service);
    const sp = svc?.ports.find((p) => p.port === m.port && p.protocol === 'TCP');
    return {
      backend: `${m.service}:${m.port}`,
      percent: Math.round((m.numerator / m.denominator) * 1000) / 10,
      readyEndpoints: sp ? (svc?.endpoints.filter((e) => e.ready && e.ports[sp.name] !== undefined).length ?? 0) : 0,
      ...(onlyFor !== undefined ? { onlyFor } : {}),
    };
  };
  check.mirrors = [...(entry.rule.mirrors ?? []).map((m) => mirror(m)), ...entry.rule.backends.flatMap((b, i) => (b.mirrors ?? []).map((m) => mirror(m, check.backends[i]?.backend ?? '')))];
  check.upstream = { path: upstreamPath + (query ? `?${query}` : ''), ...(upstreamHost !== undefined ? { host: upstreamHost } : {}) };
  check.outcome = 'routed';
  if (total === 0) check.notes.push('every backend has weight 0: the agent answers 500');
  for (const b of check.backends) {
    if (b.invalid !== undefined) check.notes.push(`${b.backend}'s share answers 500: ${b.invalid}`);
    else if (b.readyEndpoints === 0 && b.weight > 0) check.notes.push(`${b.backend} has no ready endpoint: its share answers 503`);
  }
  return check;
}

export function formatRouteCheck(c: RouteCheck): string {
  const lines: string[] = [];
  const verdict: Record<RouteCheck['outcome'], string> = {
    routed: 'ROUTED',
    unrouted: 'NOT ROUTED (L4)',
    'no-match': 'NO MATCH (404)',
    redirect: 'REDIRECT',
    'no-service': 'NO SERVICE',
  };
  lines.push(`${verdict[c.outcome]}${c.service ? `  ${c.service}:${c.port}` : ''}${c.grpc ? '  (gRPC call)' : ''}`);
  if (c.routes) lines.push(`  ${c.routes.kind} routes: ${c.routes.keys.join(', ')}`);
  if (c.route) lines.push(`  route:    ${c.route}, rule ${c.rule ?? ''}${c.match ? ` (${c.match})` : ''}`);
  if (c.redirect) lines.push(`  redirect: ${c.redirect.status} ${c.redirect.location}`);
  for (const f of c.filters) lines.push(`  filter:   ${f}`);
  for (const m of c.mirrors) lines.push(`  mirror:   ${m.onlyFor !== undefined ? `${m.onlyFor} only: ` : ''}a copy of ${m.percent} % to ${m.backend}, ${m.readyEndpoints} ready endpoint(s); its answer is discarded`);
  if (c.upstream) lines.push(`  upstream: ${c.upstream.path}${c.upstream.host !== undefined ? ` (Host: ${c.upstream.host})` : ''}`);
  for (const b of c.backends) lines.push(`  backend:  ${b.backend}  weight ${b.weight} (${b.share} %), ${b.readyEndpoints} ready endpoint(s)${b.invalid !== undefined ? `, INVALID: ${b.invalid}` : ''}`);
  if (c.timeouts) lines.push(`  timeouts: ${c.timeouts.requestMs !== undefined ? `request ${c.timeouts.requestMs} ms ` : ''}${c.timeouts.backendRequestMs !== undefined ? `backendRequest ${c.timeouts.backendRequestMs} ms` : ''}`.trimEnd());
  if (c.retry) {
    const on = [...c.retry.codes.map(String), ...(c.retry.grpcCodes ?? []).map((g) => `grpc-status ${g} (trailers-only)`), 'connect failures'];
    lines.push(`  retry:    ${c.retry.attempts - 1} retries on ${on.join(', ')}, backoff ${c.retry.backoffMs} ms doubling`);
    for (const b of c.backends) {
      const p = b.retryBudget;
      const budget = p
        ? `${p.percent} % of its requests in ${p.intervalMs / 1000} s + ${p.minCount} per ${p.minIntervalMs / 1000} s (XBackendTrafficPolicy ${p.policy}), shared by every route to it`
        : `this rule's own: ${DEFAULT_RETRY_BUDGET.ratio * 100} % of its requests in ${DEFAULT_RETRY_BUDGET.windowMs / 1000} s + ${DEFAULT_RETRY_BUDGET.minPerSecond} per s (Weft's default)`;
      lines.push(`  budget:   ${b.backend}: ${budget}; beyond it, 503`);
    }
  }
  for (const r of c.refused) lines.push(`  not applied: ${r}`);
  for (const n of c.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}

export class RouteCheckError extends Error {
  readonly code: 'USAGE' | 'NO_CLUSTER' | 'API';
  constructor(code: 'USAGE' | 'NO_CLUSTER' | 'API', message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** 0: the request reaches a backend or a redirect; 3: the agent answers it with an error (404, 500) or nothing is there; 1: error; 2: usage. */
export const ROUTE_EXIT = { ok: 0, error: 1, usage: 2, refused: 3 } as const;

export function routeExitCode(c: RouteCheck): number {
  if (c.outcome === 'no-match' || c.outcome === 'no-service') return ROUTE_EXIT.refused;
  if (c.outcome === 'routed' && c.backends.every((b) => b.invalid !== undefined || b.weight <= 0)) return ROUTE_EXIT.refused;
  return ROUTE_EXIT.ok;
}

export interface RouteCheckArgs {
  question: RouteQuestion;
  output: 'text' | 'json';
  kubeconfig?: string;
  playground?: string;
}

export function parseRouteCheckArgs(argv: string[]): RouteCheckArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        method: { type: 'string', default: 'GET' },
        header: { type: 'string', short: 'H', multiple: true, default: [] },
        output: { type: 'string', short: 'o', default: 'text' },
        kubeconfig: { type: 'string' },
        name: { type: 'string' },
      },
    });
  } catch (err) {
    throw new RouteCheckError('USAGE', (err as Error).message, { cause: err });
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 2) throw new RouteCheckError('USAGE', 'route check needs a client and a URL: <namespace>[/<pod>] http://<service>.<namespace>[:port]/path');
  const [from = '', url = ''] = positionals;
  const ns = from.split('/')[0] ?? '';
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) throw new RouteCheckError('USAGE', `not a namespace: "${from}"`);
  if (values.output !== 'text' && values.output !== 'json') throw new RouteCheckError('USAGE', `-o must be text or json, not "${values.output}"`);
  const headers = values.header.map((h): [string, string] => {
    const colon = h.indexOf(':');
    const name = colon > 0 ? h.slice(0, colon).trim() : '';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new RouteCheckError('USAGE', `--header must be 'name: value', not "${h}"`);
    return [name, h.slice(colon + 1).trim()];
  });
  return {
    question: { from: ns, url, method: values.method, headers },
    output: values.output,
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.name !== undefined ? { playground: values.name } : {}),
  };
}

async function readRouteObjects(kc: KubeConfig): Promise<RouteObjects> {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  try {
    const list = <T>(group: string, version: string, plural: string) =>
      custom.listClusterCustomObject({ group, version, plural }).catch((err: unknown) => {
        // No such Gateway API CRD: no objects of that kind, which is an answer.
        if (httpStatus(err) === 404) return { items: [] };
        throw err;
      }) as Promise<{ items: T[] }>;
    const [services, slices, http, grpc, policies] = await Promise.all([
      core.listServiceForAllNamespaces(),
      discovery.listEndpointSliceForAllNamespaces(),
      list<RouteObject>(GATEWAY_GROUP, 'v1', 'httproutes'),
      list<RouteObject>(GATEWAY_GROUP, 'v1', 'grpcroutes'),
      list<BackendPolicyObject>(POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL),
    ]);
    return { services: services.items, endpointSlices: slices.items, httpRoutes: http.items, grpcRoutes: grpc.items, backendPolicies: policies.items };
  } catch (err) {
    throw new RouteCheckError('API', `reading Services, EndpointSlices, HTTPRoutes, GRPCRoutes and XBackendTrafficPolicies: ${apiErrorSummary(err)}`, { cause: err });
  }
}

/** `weft route ...`: runs the subcommand and returns the process's exit code. */
export async function routeCommand(argv: string[], o: { defaultPlayground: string; usage: string }): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub !== 'check') throw new RouteCheckError('USAGE', sub === undefined ? 'route needs a subcommand' : `unknown route subcommand "${sub}"`);
    const args = parseRouteCheckArgs(rest);
    const kc = await loadKubeconfig({ ...args, defaultPlayground: o.defaultPlayground }, (message, cause) => new RouteCheckError('NO_CLUSTER', message, { cause }));
    const check = explainRouteCheck(await readRouteObjects(kc), args.question);
    process.stdout.write(args.output === 'json' ? `${JSON.stringify(check, null, 2)}\n` : `${formatRouteCheck(check)}\n`);
    return routeExitCode(check);
  } catch (err) {
    if (err instanceof RouteCheckError && err.code === 'USAGE') {
      process.stderr.write(`weft: ${err.message}\n${o.usage}\n`);
      return ROUTE_EXIT.usage;
    }
    process.stderr.write(`weft: ${err instanceof Error ? err.message : String(err)}\n`);
    return ROUTE_EXIT.error;
  }
}
