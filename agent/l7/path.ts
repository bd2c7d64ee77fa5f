// Request path normalization, done before policy sees a path and kept for the request forwarded
// upstream, so that policy and the backend judge the same path. Without it a rule denying `/admin`
// is bypassed by `//admin`, `/./admin`, `/a/../admin`, `/%61dmin` or (on Tomcat or Spring)
// `/admin;x` and `/public/..;/admin`, all of which some backend serves as `/admin`.
//
// The steps, in this order (RFC 3986 section 6.2.2, plus what servers do beyond it):
//   1. strip the query (kept aside, forwarded unchanged) and any fragment (never forwarded);
//   2. percent-decode unreserved characters (ALPHA DIGIT - . _ ~); other escapes stay encoded,
//      with upper-case hex. `%2F` / `%5C` and a raw `\`: refused (default), or taken as '/';
//   3. path parameters (`;...` at the end of a segment): refused (default), cut off, or kept as
//      ordinary characters. This comes before step 4 because Tomcat cuts them before it resolves
//      dot segments: `/public/..;/admin` is `/admin` to it, and must be to policy;
//   4. resolve '.' and '..' segments ('..' never climbs above the root);
//   5. merge repeated slashes (default; off for backends that tell `//a` from `/a`);
//   6. lower-case letters outside escapes, for backends that match paths case-insensitively
//      (off by default: paths are case-sensitive, `/ADMIN` is another resource).
// Paths that need none of this (the common case) are returned as they came, without allocation
// beyond the slice that drops the query. Normalizing a normalized path changes nothing.

export type NormalizedPath =
  | { ok: true; path: string; /** '' or the query with its leading '?'. */ query: string }
  | { ok: false; reason: string };

export interface PathOptions {
  /** `%2F`, `%5C` and `\`: 'reject' with 400 (backends disagree on them), or 'decode' to '/'. */
  escapedSlashes: 'reject' | 'decode';
  /** `;` parameters: 'reject' with 400, 'strip' them from each segment, or 'keep' them as characters. */
  pathParameters: 'reject' | 'strip' | 'keep';
  /** Merge `//` into `/`. */
  mergeSlashes: boolean;
  /** Lower-case the path (policy and backend both get it lower-cased). */
  caseInsensitive: boolean;
}

export const DEFAULT_PATH_OPTIONS: Readonly<PathOptions> = Object.freeze({
  escapedSlashes: 'reject',
  pathParameters: 'reject',
  mergeSlashes: true,
  caseInsensitive: false,
});

export function resolvePathOptions(options: Partial<PathOptions> | undefined): Readonly<PathOptions> {
  return options === undefined ? DEFAULT_PATH_OPTIONS : { ...DEFAULT_PATH_OPTIONS, ...options };
}

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;
const SEMICOLON = 0x3b;

/** Normalizes an origin-form request target (`/path?query`). */
export function normalizePath(target: string, options: Readonly<PathOptions> = DEFAULT_PATH_OPTIONS): NormalizedPath {
  let pathEnd: number;
  let query = '';
  const hash = target.indexOf('#');
  const end = hash === -1 ? target.length : hash;
  const question = target.indexOf('?');
  if (question !== -1 && question < end) {
    pathEnd = question;
    query = target.slice(question, end);
  } else {
    pathEnd = end;
  }
  if (target.charCodeAt(0) !== SLASH) return { ok: false, reason: 'path must start with "/"' };
  const raw = pathEnd === target.length ? target : target.slice(0, pathEnd);
  return needsWork(raw, options) ? slowPath(raw, query, options) : { ok: true, path: raw, query };
}

/**
 * True if the path has an escape, a backslash, a `;` (unless kept), an empty segment, a segment
 * starting with '.', or (case-insensitive) an upper-case letter.
 */
function needsWork(path: string, o: Readonly<PathOptions>): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === PERCENT || c === BACKSLASH) return true;
    if (c === SEMICOLON && o.pathParameters !== 'keep') return true;
    if (o.caseInsensitive && c >= 0x41 && c <= 0x5a) return true;
    if (c === SLASH && i + 1 < path.length) {
      const next = path.charCodeAt(i + 1);
      if (next === DOT || (next === SLASH && o.mergeSlashes)) return true;
    }
  }
  return false;
}

function slowPath(raw: string, query: string, o: Readonly<PathOptions>): NormalizedPath {
  const decoded = decodeUnreserved(raw, o);
  if (typeof decoded !== 'string') return decoded;
  const segments = decoded.split('/');
  const out: string[] = [];
  let trailingSlash = false;
  // segments[0] is the empty string before the leading '/'.
  for (let i = 1; i < segments.length; i++) {
    let segment = segments[i] as string;
    const semicolon = segment.indexOf(';');
    if (semicolon !== -1 && o.pathParameters !== 'keep') {
      if (o.pathParameters === 'reject') return { ok: false, reason: '";" (path parameters) in path' };
      segment = segment.slice(0, semicolon);
    }
    const last = i === segments.length - 1;
    if (segment === '.' || (segment === '' && o.mergeSlashes)) {
      if (last) trailingSlash = true;
    } else if (segment === '..') {
      out.pop();
      if (last) trailingSlash = true;
    } else {
      out.push(segment);
    }
  }
  const path = out.length === 0 ? '/' : `/${out.join('/')}${trailingSlash ? '/' : ''}`;
  return { ok: true, path: o.caseInsensitive ? lowerOutsideEscapes(path) : path, query };
}

function decodeUnreserved(raw: string, o: Readonly<PathOptions>): string | { ok: false; reason: string } {
  let out = '';
  let from = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === BACKSLASH) {
      if (o.escapedSlashes === 'reject') return { ok: false, reason: 'backslash in path' };
      out += `${raw.slice(from, i)}/`;
      from = i + 1;
      continue;
    }
    if (c !== PERCENT) continue;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return { ok: false, reason: 'invalid percent-encoding in path' };
    const byte = hi * 16 + lo;
    out += raw.slice(from, i);
    if (byte === SLASH || byte === BACKSLASH) {
      if (o.escapedSlashes === 'reject') return { ok: false, reason: 'encoded "/" or "\\" in path' };
      out += '/';
    } else {
      out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    }
    from = i + 3;
    i += 2;
  }
  return from === 0 ? raw : out + raw.slice(from);
}

/** Escapes keep their upper-case hex, so that lower-casing twice is lower-casing once. */
function lowerOutsideEscapes(path: string): string {
  let out = '';
  let from = 0;
  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 3)) {
    out += path.slice(from, i).toLowerCase() + path.slice(i, i + 3);
    from = i + 3;
  }
  return out + path.slice(from).toLowerCase();
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === DOT ||
    c === 0x5f || // _
    c === 0x7e // ~
  );
}
