// Which rule of which route a request takes: pure functions, no I/O.
//
// The routes that apply to one (client namespace, Service, port) are flattened into one list of
// (route, rule, match) entries, sorted once by the Gateway API's precedence, and a request takes
// the first entry that matches. Precedence: an Exact path, then a regular expression (its order
// is left to implementations: a pattern is a deliberate choice, so it beats any prefix), then the
// longest PathPrefix; then a method match; then more header matches; then more query-parameter
// matches; then the oldest route, then the route's namespace/name; then the rule's and the
// match's order in the route.
import type { CompiledRoute, RouteMatch, RouteRule, StringMatch } from '../../api/route.ts';

/** What matching reads of a request. Header names are lower case. */
export interface RequestView {
  method: string;
  /** The request target's path, without the query. */
  path: string;
  /** The query string, without `?`. */
  query: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface MatchEntry {
  route: CompiledRoute;
  rule: RouteRule;
  ruleIndex: number;
  match: RouteMatch;
  /** The compiled regular expressions of the match, built once. */
  pathRegex?: RegExp;
  headerRegex: (RegExp | undefined)[];
  queryRegex: (RegExp | undefined)[];
}

const DEFAULT_MATCH: RouteMatch = { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] };

/** A whole-value match, as the Gateway API's regular expressions are meant. */
function anchored(re: string): RegExp {
  return new RegExp(`^(?:${re})$`);
}

function compileStrings(ms: StringMatch[]): (RegExp | undefined)[] {
  return ms.map((m) => (m.type === 'RegularExpression' ? anchored(m.value) : undefined));
}

/** The entries of the routes, in the order requests try them. */
export function flatten(routes: readonly CompiledRoute[]): MatchEntry[] {
  const out: (MatchEntry & { order: number })[] = [];
  for (const route of routes) {
    route.rules.forEach((rule, ruleIndex) => {
      const matches = rule.matches.length > 0 ? rule.matches : [DEFAULT_MATCH];
      for (const match of matches) {
        const path = match.path ?? DEFAULT_MATCH.path;
        const m = { ...match, ...(path ? { path } : {}) };
        out.push({
          route,
          rule,
          ruleIndex,
          match: m,
          ...(m.path?.type === 'RegularExpression' ? { pathRegex: anchored(m.path.value) } : {}),
          headerRegex: compileStrings(m.headers),
          queryRegex: compileStrings(m.queryParams),
          order: out.length,
        });
      }
    });
  }
  out.sort(compareEntries);
  return out;
}

function pathRank(m: RouteMatch): [number, number] {
  const p = m.path;
  if (!p) return [2, 1];
  if (p.type === 'Exact') return [4, p.value.length];
  if (p.type === 'RegularExpression') return [3, p.value.length];
  return [2, normalPrefix(p.value).length];
}

function compareEntries(a: MatchEntry & { order: number }, b: MatchEntry & { order: number }): number {
  const [ak, al] = pathRank(a.match);
  const [bk, bl] = pathRank(b.match);
  return (
    bk - ak ||
    bl - al ||
    Number(b.match.method !== undefined) - Number(a.match.method !== undefined) ||
    b.match.headers.length - a.match.headers.length ||
    b.match.queryParams.length - a.match.queryParams.length ||
    (a.route.created < b.route.created ? -1 : a.route.created > b.route.created ? 1 : 0) ||
    (a.route.key < b.route.key ? -1 : a.route.key > b.route.key ? 1 : 0) ||
    a.order - b.order
  );
}

/** `/foo/` and `/foo` are the same prefix. */
function normalPrefix(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.replace(/\/+$/, '') || '/' : p;
}

/** Element-wise: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, never `/foobar`. */
export function prefixMatches(prefix: string, path: string): boolean {
  const p = normalPrefix(prefix);
  if (p === '/') return true;
  if (!path.startsWith(p)) return false;
  return path.length === p.length || path[p.length] === '/';
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The first value of each query parameter (the Gateway API leaves repeats to implementations). */
export function parseQuery(query: string): Map<string, string> {
  const out = new Map<string, string>();
  if (query === '') return out;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? '' : part.slice(eq + 1);
    const name = safeDecode(rawName);
    if (!out.has(name)) out.set(name, safeDecode(rawValue));
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export function entryMatches(e: MatchEntry, req: RequestView, query?: Map<string, string>): boolean {
  const m = e.match;
  if (m.method !== undefined && m.method !== req.method) return false;
  if (m.path) {
    if (m.path.type === 'Exact' && req.path !== m.path.value) return false;
    if (m.path.type === 'PathPrefix' && !prefixMatches(m.path.value, req.path)) return false;
    if (m.path.type === 'RegularExpression' && !e.pathRegex?.test(req.path)) return false;
  }
  for (let i = 0; i < m.headers.length; i++) {
    const h = m.headers[i] as StringMatch;
    const v = first(req.headers[h.name.toLowerCase()]);
    if (v === undefined) return false;
    const re = e.headerRegex[i];
    if (re ? !re.test(v) : v !== h.value) return false;
  }
  if (m.queryParams.length > 0) {
    const q = query ?? parseQuery(req.query);
    for (let i = 0; i < m.queryParams.length; i++) {
      const qm = m.queryParams[i] as StringMatch;
      const v = q.get(qm.name);
      if (v === undefined) return false;
      const re = e.queryRegex[i];
      if (re ? !re.test(v) : v !== qm.value) return false;
    }
  }
  return true;
}

/** The first entry the request matches, or undefined (the Gateway API answers 404). */
export function findEntry(entries: readonly MatchEntry[], req: RequestView): MatchEntry | undefined {
  let query: Map<string, string> | undefined;
  for (const e of entries) {
    if (e.match.queryParams.length > 0) query ??= parseQuery(req.query);
    if (entryMatches(e, req, query)) return e;
  }
  return undefined;
}

/** Splits a request target into path and query. */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
}
