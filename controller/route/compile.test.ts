import t from 'tap';
import type { Service } from '../../api/agent-sync.ts';
import { compileRoute, parseGrpcCodes, parentStatuses, parseDuration, validRegex, type RouteObject } from './compile.ts';

const svc = (ns: string, name: string, ports = [80]): Service => ({
  key: `${ns}/${name}`,
  namespace: ns,
  name,
  clusterIPs: ['10.96.0.10'],
  ports: ports.map((port) => ({ name: `p${port}`, port, protocol: 'TCP', appProtocol: 'http' })),
  endpoints: [],
});
const services = new Map([svc('a', 'web'), svc('a', 'canary'), svc('b', 'other')].map((s) => [s.key, s]));
const service = (k: string) => services.get(k);
const route = (ns: string, spec: RouteObject['spec']): RouteObject => ({ metadata: { name: 'r', namespace: ns, generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' }, spec });

t.test('durations', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('10s'), 10_000);
  t.equal(parseDuration('1m1s1ms'), 61_001);
  t.equal(parseDuration('soon'), undefined);
  t.equal(parseDuration(''), undefined);
});

t.test('a producer route compiles, with timeouts and retry', async (t) => {
  const r = compileRoute({
    kind: 'HTTPRoute',
    service,
    route: route('a', {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }, { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }],
      rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/x' }, headers: [{ name: 'X-A', value: '1' }] }], backendRefs: [{ name: 'canary', port: 80, weight: 10 }], timeouts: { request: '2s', backendRequest: '500ms' }, retry: { codes: [503], attempts: 2, backoff: '10ms' } }],
    }),
  });
  t.equal(r.parents.length, 1, 'the Gateway parent is not ours: no status for it');
  t.equal(r.parents[0]?.accepted.ok, true);
  t.match(r.parents[0]?.accepted.message, /producer/);
  t.equal(r.parents[0]?.resolvedRefs.ok, true);
  t.same(r.compiled?.parents, [{ service: 'a/web', port: 80 }]);
  const rule = r.compiled?.rules[0];
  t.same(rule?.matches[0]?.headers, [{ type: 'Exact', name: 'x-a', value: '1' }], 'header names lower-cased');
  t.same(rule?.timeouts, { requestMs: 2000, backendRequestMs: 500 });
  t.same(rule?.retry, { codes: [503], attempts: 3, backoffMs: 10 }, 'attempts counts the first try too');
});

t.test('retry.weft.dev/grpc-codes: every rule retries those gRPC statuses; a rule with retry keeps its attempts; a bad code refuses the route', async (t) => {
  const annotated = (annotations: Record<string, string>, rules: object[]): RouteObject => ({ ...route('a', { parentRefs: [{ name: 'web', port: 80 }], rules }), metadata: { name: 'r', namespace: 'a', annotations } });
  t.same(parseGrpcCodes(' unavailable, RESOURCE_EXHAUSTED,4,unavailable'), { codes: [14, 8, 4], problems: [] }, 'names either way, numbers, no repeats');
  t.match(parseGrpcCodes('0, 17, nope').problems, [/"0"/, /"17"/, /"nope"/], 'OK and what is not a code are refused');
  t.match(parseGrpcCodes(' , ').problems, [/names no gRPC status code/]);
  const ok = compileRoute({
    kind: 'HTTPRoute',
    service,
    route: annotated({ 'retry.weft.dev/grpc-codes': 'unavailable,cancelled' }, [{ backendRefs: [{ name: 'web', port: 80 }] }, { retry: { codes: [503], attempts: 4, backoff: '10ms' }, backendRefs: [{ name: 'web', port: 80 }] }]),
  });
  t.equal(ok.parents[0]?.accepted.ok, true);
  t.same(ok.compiled?.rules[0]?.retry, { codes: [], attempts: 3, backoffMs: 0, grpcCodes: [14, 1] }, 'a rule without retry: two retries, gRPC statuses only');
  t.same(ok.compiled?.rules[1]?.retry, { codes: [503], attempts: 5, backoffMs: 10, grpcCodes: [14, 1] }, 'a rule with retry keeps its codes, attempts and backoff');
  const bad = compileRoute({ kind: 'GRPCRoute', service, route: annotated({ 'retry.weft.dev/grpc-codes': 'unavailabel' }, [{ backendRefs: [{ name: 'web', port: 80 }] }]) });
  t.equal(bad.parents[0]?.accepted.ok, false, 'a misspelt code: not in force');
  t.equal(bad.parents[0]?.accepted.reason, 'UnsupportedValue');
  t.match(bad.parents[0]?.accepted.message, /retry\.weft\.dev\/grpc-codes.*"unavailabel" is not a gRPC status code/, 'and the status says which annotation and value');
});

t.test('backend problems: InvalidKind, BackendNotFound; another namespace needs no ReferenceGrant', async (t) => {
  const spec = {
    parentRefs: [{ name: 'web', namespace: 'a' }],
    rules: [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'x' }, { name: 'web', namespace: 'a', port: 80 }, { name: 'gone', port: 80 }, { name: 'other', port: 81 }] }],
  };
  const r = compileRoute({ kind: 'HTTPRoute', service, route: route('b', spec) });
  t.match(r.parents[0]?.accepted.message, /consumer route/);
  t.equal(r.parents[0]?.resolvedRefs.ok, false);
  t.equal(r.parents[0]?.resolvedRefs.reason, 'InvalidKind', 'the first problem names the reason');
  const invalid = r.compiled?.rules[0]?.backends.map((b) => b.invalid?.split(':')[0]);
  t.same(invalid, ['InvalidKind', undefined, 'BackendNotFound', 'BackendNotFound'], 'each backend keeps its weight and its problem; the producer\'s Service resolves without a grant');
  const consumer = compileRoute({ kind: 'HTTPRoute', service, route: route('b', { parentRefs: [{ name: 'web', namespace: 'a' }], rules: [{ backendRefs: [{ name: 'web', namespace: 'a', port: 80 }] }] }) });
  t.equal(consumer.parents[0]?.resolvedRefs.ok, true, 'a consumer route to the producer\'s Service resolves (GEP-1294: mesh routes need no ReferenceGrant)');
  t.equal(consumer.parents[0]?.resolvedRefs.reason, 'ResolvedRefs');
});

t.test('a missing parent is NoMatchingParent; an unsupported filter refuses the route', async (t) => {
  const missing = compileRoute({ kind: 'HTTPRoute', service, route: route('a', { parentRefs: [{ name: 'nope' }, { name: 'web', port: 9 }], rules: [] }) });
  t.same(missing.parents.map((p) => p.accepted.reason), ['NoMatchingParent', 'NoMatchingParent']);
  t.equal(missing.compiled, undefined, 'not sent to agents');
  const ext = compileRoute({ kind: 'HTTPRoute', service, route: route('a', { parentRefs: [{ name: 'web' }], rules: [{ filters: [{ type: 'ExtensionRef' }], backendRefs: [{ name: 'web', port: 80 }] }] }) });
  t.equal(ext.parents[0]?.accepted.reason, 'UnsupportedValue');
  t.match(ext.parents[0]?.accepted.message, /ExtensionRef/);
  t.equal(ext.compiled, undefined);
});

t.test('RequestMirror: shares, per-backend mirrors, and a mirror that does not resolve', async (t) => {
  const mirror = (requestMirror: object) => ({ type: 'RequestMirror', requestMirror }) as never;
  const r = compileRoute({
    kind: 'HTTPRoute',
    service,
    route: route('a', {
      parentRefs: [{ name: 'web' }],
      rules: [
        {
          filters: [mirror({ backendRef: { name: 'canary', port: 80 } }), mirror({ backendRef: { name: 'other', namespace: 'b', port: 80 }, percent: 25 }), mirror({ backendRef: { name: 'web', port: 80 }, fraction: { numerator: 1, denominator: 3 } })],
          backendRefs: [{ name: 'web', port: 80, filters: [mirror({ backendRef: { name: 'canary', port: 80 }, fraction: { numerator: 5 } })] }],
        },
      ],
    }),
  });
  t.equal(r.parents[0]?.accepted.ok, true, r.parents[0]?.accepted.message ?? '');
  t.equal(r.parents[0]?.resolvedRefs.ok, true, r.parents[0]?.resolvedRefs.message ?? '');
  t.same(r.compiled?.rules[0]?.mirrors, [
    { service: 'a/canary', port: 80, numerator: 1, denominator: 1 },
    { service: 'b/other', port: 80, numerator: 25, denominator: 100 },
    { service: 'a/web', port: 80, numerator: 1, denominator: 3 },
  ]);
  t.same(r.compiled?.rules[0]?.filters, [], 'mirrors are not filters an older agent would refuse');
  t.same(r.compiled?.rules[0]?.backends[0]?.mirrors, [{ service: 'a/canary', port: 80, numerator: 5, denominator: 100 }]);

  const missing = compileRoute({ kind: 'HTTPRoute', service, route: route('a', { parentRefs: [{ name: 'web' }], rules: [{ filters: [mirror({ backendRef: { name: 'gone', port: 80 } })], backendRefs: [{ name: 'web', port: 80 }] }] }) });
  t.equal(missing.parents[0]?.accepted.ok, true, 'still accepted');
  t.equal(missing.parents[0]?.resolvedRefs.reason, 'BackendNotFound');
  t.match(missing.parents[0]?.resolvedRefs.message, /requestMirror\.backendRef \(gone\)/);
  t.equal(missing.compiled?.rules[0]?.mirrors, undefined, 'and the mirror left out');

  for (const bad of [{ percent: 101 }, { fraction: { numerator: 3, denominator: 2 } }, { percent: 5, fraction: { numerator: 1 } }, {}]) {
    const spec = { parentRefs: [{ name: 'web' }], rules: [{ filters: [mirror({ backendRef: 'percent' in bad || 'fraction' in bad ? { name: 'canary', port: 80 } : undefined, ...bad })], backendRefs: [{ name: 'web', port: 80 }] }] };
    const x = compileRoute({ kind: 'HTTPRoute', service, route: route('a', spec) });
    t.equal(x.parents[0]?.accepted.reason, 'UnsupportedValue', JSON.stringify(bad));
  }
});

t.test('status entries keep their transition time while unchanged', async (t) => {
  const verdicts = [{ parentRef: { name: 'web' }, accepted: { ok: true, reason: 'Accepted', message: 'm' }, resolvedRefs: { ok: false, reason: 'BackendNotFound', message: 'x' } }];
  const first = parentStatuses(verdicts, 1, 'c', [], new Date('2026-01-01T00:00:00Z'));
  t.equal(first[0]?.conditions[1]?.status, 'False');
  const second = parentStatuses(verdicts, 2, 'c', first, new Date('2026-02-01T00:00:00Z'));
  t.equal(second[0]?.conditions[0]?.lastTransitionTime, '2026-01-01T00:00:00Z');
  t.equal(second[0]?.conditions[0]?.observedGeneration, 2);
});

t.test('patterns that could stall an agent are refused', async (t) => {
  for (const ok of ['/api/v[0-9]+/.*', '^/a(b|c)?$', '(foo)+', '[a-z]+(\\.[a-z]+)?', '(a+)?x']) t.ok(validRegex(ok), `${ok} accepted`);
  for (const bad of ['(a+)+', '(x*y?)*$', '((ab)+c)*', '(a|b+)*', '(.*)\\1', '(?=x)y', 'x'.repeat(1025), '(unclosed']) t.notOk(validRegex(bad), `${bad.slice(0, 20)} refused`);
  const r = compileRoute({ kind: 'HTTPRoute', service, route: route('a', { parentRefs: [{ name: 'web' }], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/(a+)+$' } }], backendRefs: [{ name: 'web', port: 80 }] }] }) });
  t.equal(r.parents[0]?.accepted.reason, 'UnsupportedValue', 'the route is not accepted');
});

t.test('a GRPCRoute compiles: gRPC method matches become path matches, headers and weights kept', async (t) => {
  const r = compileRoute({
    kind: 'GRPCRoute',
    service,
    route: route('a', {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [
        {
          matches: [
            { method: { service: 'pkg.v1.Echo', method: 'Hello' }, headers: [{ name: 'X-Canary', value: 'yes' }] },
            { method: { service: 'pkg.v1.Echo' } },
            { method: { method: 'Hello' } },
            { method: { type: 'RegularExpression', service: 'pkg\\..*', method: 'He.*' } },
            { method: { type: 'RegularExpression', method: 'Bye' } },
          ],
          filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }] } }],
          backendRefs: [{ name: 'web', port: 80, weight: 7 }, { name: 'canary', port: 80, weight: 3 }],
        },
      ],
    }),
  });
  t.equal(r.parents[0]?.accepted.ok, true, JSON.stringify(r.parents[0]?.accepted));
  t.equal(r.parents[0]?.resolvedRefs.ok, true);
  t.equal(r.compiled?.kind, 'GRPCRoute');
  t.equal(r.compiled?.key, 'GRPCRoute/a/r');
  const m = r.compiled?.rules[0]?.matches ?? [];
  t.same(m[0], { path: { type: 'Exact', value: '/pkg.v1.Echo/Hello' }, headers: [{ type: 'Exact', name: 'x-canary', value: 'yes' }], queryParams: [] });
  t.same(m[1]?.path, { type: 'PathPrefix', value: '/pkg.v1.Echo' }, 'a service alone: every method of it');
  t.same(m[2]?.path, { type: 'RegularExpression', value: '/[^/]+/Hello' }, 'a method alone: in any service');
  t.same(m[3]?.path, { type: 'RegularExpression', value: '/(?:pkg\\..*)/(?:He.*)' });
  t.same(m[4]?.path, { type: 'RegularExpression', value: '/(?:[^/]+)/(?:Bye)' });
  t.equal(m[0]?.method, undefined, 'no HTTP method is matched');
  t.same(r.compiled?.rules[0]?.backends.map((b) => [b.service, b.weight]), [['a/web', 7], ['a/canary', 3]]);
  // The agent anchors patterns (agent/route/match.ts): a method-only match takes whole names.
  const exact = new RegExp(`^(?:${m[2]?.path?.value ?? ''})$`);
  t.ok(exact.test('/any.Svc/Hello') && !exact.test('/any.Svc/HelloX'), 'the method-only pattern matches whole names');
});

t.test('a GRPCRoute with a filter GRPCRoute has no business with, or an unsafe pattern, is not accepted', async (t) => {
  const mirror = compileRoute({
    kind: 'GRPCRoute',
    service,
    route: route('a', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'canary', port: 80 }, percent: 10 } }], backendRefs: [{ name: 'web', port: 80 }] }] }),
  });
  t.equal(mirror.parents[0]?.accepted.ok, true, 'RequestMirror is a GRPCRoute filter too');
  t.same(mirror.compiled?.rules[0]?.mirrors, [{ service: 'a/canary', port: 80, numerator: 10, denominator: 100 }]);
  const redirect = compileRoute({
    kind: 'GRPCRoute',
    service,
    route: route('a', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301 } }], backendRefs: [{ name: 'web', port: 80 }] }] }),
  });
  t.equal(redirect.parents[0]?.accepted.reason, 'UnsupportedValue', 'a redirect is an HTTPRoute filter only');
  const unsafe = compileRoute({
    kind: 'GRPCRoute',
    service,
    route: route('a', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ matches: [{ method: { type: 'RegularExpression', service: '(a+)+' } }], backendRefs: [{ name: 'web', port: 80 }] }] }),
  });
  t.equal(unsafe.parents[0]?.accepted.reason, 'UnsupportedValue');
  t.match(unsafe.parents[0]?.accepted.message, /method\.service/);
  const missing = compileRoute({
    kind: 'GRPCRoute',
    service,
    route: route('a', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'nope', port: 80 }] }] }),
  });
  t.equal(missing.parents[0]?.accepted.ok, true);
  t.equal(missing.parents[0]?.resolvedRefs.reason, 'BackendNotFound');
});
