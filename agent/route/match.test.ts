import t from 'tap';
import fc from 'fast-check';
import type { CompiledRoute, RouteMatch, RouteRule } from '../../api/route.ts';
import { findEntry, flatten, parseQuery, prefixMatches, splitTarget, type RequestView } from './match.ts';

const rule = (name: string, matches: RouteMatch[]): RouteRule => ({ name, matches, filters: [], backends: [{ service: `ns/${name}`, port: 80, weight: 1, filters: [] }] });
const route = (name: string, rules: RouteRule[], created = '2026-01-01T00:00:00Z'): CompiledRoute => ({
  key: `HTTPRoute/ns/${name}`,
  kind: 'HTTPRoute',
  namespace: 'ns',
  name,
  generation: 1,
  created,
  parents: [{ service: 'ns/svc' }],
  rules,
});
const m = (o: Partial<RouteMatch>): RouteMatch => ({ headers: [], queryParams: [], ...o });
const req = (target: string, o: { method?: string; headers?: Record<string, string> } = {}): RequestView => ({ method: o.method ?? 'GET', ...splitTarget(target), headers: o.headers ?? {} });
const pick = (routes: CompiledRoute[], r: RequestView) => findEntry(flatten(routes), r)?.rule.name;

t.test('path prefixes match whole segments', async (t) => {
  t.ok(prefixMatches('/foo', '/foo'));
  t.ok(prefixMatches('/foo', '/foo/bar'));
  t.ok(prefixMatches('/foo/', '/foo'));
  t.ok(prefixMatches('/foo/', '/foo/bar'));
  t.notOk(prefixMatches('/foo', '/foobar'));
  t.ok(prefixMatches('/', '/anything'));
});

t.test('precedence: exact, longest prefix, method, headers, query params, then age and name', async (t) => {
  const routes = [
    route('r', [
      rule('catchall', []),
      rule('prefix', [m({ path: { type: 'PathPrefix', value: '/a' } })]),
      rule('longer', [m({ path: { type: 'PathPrefix', value: '/a/b' } })]),
      rule('exact', [m({ path: { type: 'Exact', value: '/a/b' } })]),
      rule('method', [m({ path: { type: 'PathPrefix', value: '/a' }, method: 'POST' })]),
      rule('header', [m({ path: { type: 'PathPrefix', value: '/a' }, headers: [{ type: 'Exact', name: 'x-v', value: '2' }] })]),
      rule('query', [m({ path: { type: 'PathPrefix', value: '/a' }, queryParams: [{ type: 'Exact', name: 'v', value: '3' }] })]),
      rule('regex', [m({ path: { type: 'RegularExpression', value: '/r/[0-9]+' } })]),
    ]),
  ];
  t.equal(pick(routes, req('/a/b')), 'exact');
  t.equal(pick(routes, req('/a/b/c')), 'longer');
  t.equal(pick(routes, req('/a/x', { method: 'POST', headers: { 'x-v': '2' } })), 'method', 'a method beats a header');
  t.equal(pick(routes, req('/a/x?v=3', { headers: { 'x-v': '2' } })), 'header', 'a header beats a query param');
  t.equal(pick(routes, req('/a/x?v=3')), 'query');
  t.equal(pick(routes, req('/a/x')), 'prefix');
  t.equal(pick(routes, req('/r/12')), 'regex');
  t.equal(pick(routes, req('/r/12x')), 'catchall', 'a regular expression matches the whole path');
  t.equal(pick(routes, req('/zzz')), 'catchall');
  // Equal specificity: the oldest route wins, then the name.
  const older = route('zeta', [rule('old', [])], '2025-01-01T00:00:00Z');
  const newer = route('alpha', [rule('new', [])], '2026-01-01T00:00:00Z');
  t.equal(pick([newer, older], req('/')), 'old');
  t.equal(pick([route('b', [rule('b', [])]), route('a', [rule('a', [])])], req('/')), 'a');
});

t.test('no match gives undefined (the proxy answers 404)', async (t) => {
  t.equal(pick([route('r', [rule('only', [m({ path: { type: 'Exact', value: '/x' } })])])], req('/y')), undefined);
});

t.test('header names are case-insensitive, values exact or regular expressions; query parameters decoded', async (t) => {
  const routes = [route('r', [rule('h', [m({ headers: [{ type: 'RegularExpression', name: 'X-Env', value: 'can.*' }] })]), rule('q', [m({ queryParams: [{ type: 'Exact', name: 'a b', value: 'c/d' }] })])])];
  t.equal(pick(routes, req('/', { headers: { 'x-env': 'canary' } })), 'h');
  t.equal(pick(routes, req('/', { headers: { 'x-env': 'prod' } })), undefined);
  t.equal(pick(routes, req('/?a%20b=c%2Fd')), 'q');
  t.same([...parseQuery('a=1&a=2&b')], [['a', '1'], ['b', '']], 'the first value of a repeated parameter');
});

t.test('property: no matching entry is more specific than the one chosen', async () => {
  const seg = fc.constantFrom('a', 'b', 'c');
  const pathArb = fc.array(seg, { minLength: 0, maxLength: 3 }).map((s) => `/${s.join('/')}`);
  const matchArb = fc.record({
    path: fc.option(fc.record({ type: fc.constantFrom('Exact' as const, 'PathPrefix' as const), value: pathArb }), { nil: undefined }),
    method: fc.option(fc.constantFrom('GET', 'POST'), { nil: undefined }),
    headers: fc.array(fc.record({ type: fc.constant('Exact' as const), name: fc.constantFrom('x-a', 'x-b'), value: fc.constantFrom('1', '2') }), { maxLength: 2 }),
    queryParams: fc.array(fc.record({ type: fc.constant('Exact' as const), name: fc.constantFrom('p', 'q'), value: fc.constantFrom('1', '2') }), { maxLength: 1 }),
  });
  const routesArb = fc.array(fc.array(fc.array(matchArb, { maxLength: 2 }), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 });
  const reqArb = fc.record({
    path: pathArb,
    method: fc.constantFrom('GET', 'POST'),
    a: fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
    p: fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
  });
  fc.assert(
    fc.property(routesArb, reqArb, (rs, r) => {
      const routes = rs.map((rules, i) => route(`r${i}`, rules.map((ms, j) => rule(`r${i}-${j}`, ms.map((x) => m(x.path ? { ...x, path: x.path } : { headers: x.headers, queryParams: x.queryParams, ...(x.method ? { method: x.method } : {}) }))))));
      const entries = flatten(routes);
      const view = req(`${r.path}${r.p ? `?p=${r.p}` : ''}`, { method: r.method, headers: r.a ? { 'x-a': r.a } : {} });
      const chosen = findEntry(entries, view);
      const matching = entries.filter((e) => findEntry([e], view) !== undefined);
      if (!chosen) return matching.length === 0;
      // No other matching entry is more specific than the chosen one.
      const rank = (x: RouteMatch) => {
        const kind = x.path?.type === 'Exact' ? 3 : 2;
        const len = x.path ? x.path.value.replace(/(.)\/+$/, '$1').length : 1;
        return [kind, len, x.method ? 1 : 0, x.headers.length, x.queryParams.length];
      };
      const c = rank(chosen.match);
      return matching.every((e) => {
        const o = rank(e.match);
        for (let i = 0; i < c.length; i++) if (o[i] !== c[i]) return (o[i] as number) < (c[i] as number);
        return true;
      });
    }),
  );
});
