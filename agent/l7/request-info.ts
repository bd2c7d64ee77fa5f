// The parts of a request that policy sees and that both protocols derive the same way: the host
// (from Host, `:authority` or an absolute-form target), whether it is gRPC, and the request target
// of an HTTP/1.1 request line, which unlike HTTP/2's `:path` comes in several forms.

import { DEFAULT_PATH_OPTIONS, type PathOptions, normalizePath } from './path.ts';

/**
 * Lower-case host without port, and without the trailing dot of a fully qualified name
 * ("API.Example.com.:8080" -> "api.example.com"), so that one rule matches every spelling a
 * backend treats as the same host. IPv6 literals keep their brackets ("[::1]:80" -> "[::1]").
 */
export function hostOf(authority: string | undefined): string {
  if (!authority) return '';
  let host = authority;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    if (close !== -1) host = host.slice(0, close + 1);
  } else {
    const colon = host.lastIndexOf(':');
    // One colon: host:port. More than one without brackets is not a valid authority; keep it whole.
    if (colon !== -1 && host.indexOf(':') === colon) host = host.slice(0, colon);
  }
  if (host.length > 1 && host.charCodeAt(host.length - 1) === 0x2e /* . */) host = host.slice(0, -1);
  return host.toLowerCase();
}

export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/** A field's values as one string, joined as Node's HTTP/1 parser joins a repeated list field. */
export function joinValues(value: string | string[] | undefined): string | undefined {
  return value === undefined || typeof value === 'string' ? value : value.join(', ');
}

export type RequestTarget =
  | {
      ok: true;
      /** Normalized path, what policy sees ('*' for `OPTIONS *`). */
      path: string;
      /**
       * What to send upstream as the request target, always in origin-form: the normalized path
       * plus the original query (an absolute-form target's authority goes into Host instead).
       */
      forward: string;
      /** The authority of an absolute-form target, which takes precedence over Host (RFC 9112 3.2.2). */
      authority: string | undefined;
      /** The scheme of an absolute-form target ('http' otherwise), for its default port. */
      scheme: string;
    }
  | { ok: false; reason: string; /** The path as received, without query, for the access log. */ path: string };

const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]*)(.*)$/i;

/** Parses and normalizes an HTTP/1.1 request target: origin-form, absolute-form, or `*` for OPTIONS. */
export function parseRequestTarget(method: string, target: string, options: Readonly<PathOptions> = DEFAULT_PATH_OPTIONS): RequestTarget {
  if (target.charCodeAt(0) === 0x2f /* / */) {
    const n = normalizePath(target, options);
    return n.ok ? { ok: true, path: n.path, forward: n.query === '' ? n.path : n.path + n.query, authority: undefined, scheme: 'http' } : { ...n, path: rawPath(target) };
  }
  if (target === '*') {
    return method === 'OPTIONS' ? { ok: true, path: '*', forward: '*', authority: undefined, scheme: 'http' } : { ok: false, reason: '"*" is only a target for OPTIONS', path: '*' };
  }
  const absolute = ABSOLUTE_FORM.exec(target);
  if (!absolute) return { ok: false, reason: 'unsupported request target', path: rawPath(target) };
  const [, scheme, authority, rest] = absolute as unknown as [string, string, string, string];
  if (authority === '' || authority.includes('@')) return { ok: false, reason: 'invalid authority in request target', path: rawPath(rest) };
  const n = normalizePath(rest === '' || rest.charCodeAt(0) !== 0x2f ? `/${rest}` : rest, options);
  if (!n.ok) return { ...n, path: rawPath(rest) };
  return { ok: true, path: n.path, forward: n.path + n.query, authority, scheme: scheme.toLowerCase() };
}

function rawPath(target: string): string {
  const end = target.search(/[?#]/);
  return end === -1 ? target : target.slice(0, end);
}
