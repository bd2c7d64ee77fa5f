// The Gateway API filters, applied to plain header maps and paths.
import type { HeaderModifier, RouteFilter, RouteMatch } from '../../api/route.ts';

/** Header name (lower case) → value(s), as node:http hands them over. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** set replaces, add appends (comma-joined, as HTTP folds repeated fields), remove drops. */
export function modifyHeaders(headers: HeaderMap, m: HeaderModifier): void {
  for (const { name, value } of m.set) headers[name.toLowerCase()] = value;
  for (const { name, value } of m.add) {
    const k = name.toLowerCase();
    const prev = headers[k];
    if (prev === undefined) headers[k] = value;
    else if (Array.isArray(prev)) headers[k] = [...prev, value];
    else headers[k] = `${prev},${value}`;
  }
  for (const name of m.remove) delete headers[name.toLowerCase()];
}

/** The path after a ReplaceFullPath or ReplacePrefixMatch of the rule's matched prefix. */
export function rewritePath(path: string, mod: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string }, match: RouteMatch): string {
  if (mod.type === 'ReplaceFullPath') return mod.value;
  const prefix = match.path?.type === 'PathPrefix' ? match.path.value.replace(/\/+$/, '') : '';
  const rest = path.slice(prefix.length);
  // `/prefix` → `/`, `/prefix/x` → `/x`: never two slashes, never an empty path.
  const out = mod.value.endsWith('/') && rest.startsWith('/') ? mod.value + rest.slice(1) : mod.value + rest;
  return out === '' ? '/' : out;
}

export interface RedirectTarget {
  status: number;
  location: string;
}

/** The Location of a RequestRedirect: every part not given is the request's own. */
export function redirectLocation(
  f: Extract<RouteFilter, { type: 'RequestRedirect' }>,
  req: { host: string; path: string; query: string },
  match: RouteMatch,
): RedirectTarget {
  const scheme = f.scheme ?? 'http';
  const [reqHost, reqPort] = splitHost(req.host);
  const host = f.hostname ?? reqHost;
  // The port: the filter's; else the default of a changed scheme; else the request's.
  let port: string | undefined;
  if (f.port !== undefined) port = String(f.port);
  else if (f.scheme !== undefined) port = undefined;
  else port = reqPort;
  if (port !== undefined && ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443'))) port = undefined;
  const path = f.path ? rewritePath(req.path, f.path, match) : req.path;
  const location = `${scheme}://${host}${port !== undefined ? `:${port}` : ''}${path}${req.query ? `?${req.query}` : ''}`;
  return { status: f.statusCode, location };
}

function splitHost(host: string): [string, string | undefined] {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    const rest = host.slice(end + 1);
    return [host.slice(0, end + 1), rest.startsWith(':') ? rest.slice(1) : undefined];
  }
  const c = host.lastIndexOf(':');
  return c < 0 ? [host, undefined] : [host.slice(0, c), host.slice(c + 1)];
}

export type ResponseModifier = Extract<RouteFilter, { type: 'ResponseHeaderModifier' }>;

/**
 * A request on its way upstream as a rule's filters and then its backend's make it, the same on
 * HTTP/1.1 (proxy.ts) and h2 (h2.ts): header changes land in `headers`, a rewritten host goes to
 * `setHost` (the Host header or :authority), the rewritten path and the response modifiers are kept
 * here, and a RequestRedirect ends it with the redirect to answer instead.
 */
export class UpstreamRequest {
  readonly responseMods: ResponseModifier[] = [];
  upstreamPath: string;
  readonly #o: { headers: HeaderMap; setHost: (host: string) => void; original: { host: string; path: string; query: string }; match: RouteMatch | undefined };

  constructor(o: { headers: HeaderMap; setHost: (host: string) => void; original: { host: string; path: string; query: string }; match: RouteMatch | undefined }) {
    this.#o = o;
    this.upstreamPath = o.original.path;
  }

  /** Applies one list of filters; the redirect to answer with if one of them is a RequestRedirect. */
  apply(filters: RouteFilter[]): RedirectTarget | undefined {
    const { headers, setHost, original, match } = this.#o;
    for (const f of filters) {
      switch (f.type) {
        case 'RequestHeaderModifier':
          modifyHeaders(headers, f.modifier);
          break;
        case 'ResponseHeaderModifier':
          this.responseMods.push(f);
          break;
        case 'URLRewrite':
          if (f.hostname !== undefined) setHost(f.hostname);
          if (f.path && match) this.upstreamPath = rewritePath(original.path, f.path, match);
          break;
        case 'RequestRedirect':
          return redirectLocation(f, original, match ?? { headers: [], queryParams: [] });
      }
    }
    return undefined;
  }
}
