// Request path normalization, done before policy sees a path and kept for the request forwarded
// upstream, so that policy and the backend judge the same path. Without it a rule denying `/admin`
// is bypassed by `//admin`, `/./admin`, `/a/../admin` or `/%61dmin`, all of which most backends
// serve as `/admin`.
//
// The steps (RFC 3986 section 6.2.2, plus the slash merging most servers do):
//   1. strip the query (kept aside, forwarded unchanged) and any fragment (never forwarded);
//   2. percent-decode unreserved characters only (ALPHA DIGIT - . _ ~); other escapes stay
//      encoded, with upper-case hex;
//   3. refuse an encoded '/' or '\' (%2F, %5C) and a raw '\': backends disagree on whether those
//      separate segments, so no single normalized form is safe to authorize;
//   4. resolve '.' and '..' segments ('..' never climbs above the root);
//   5. merge repeated slashes.
// Paths that need none of this (the common case) are returned as they came, without allocation
// beyond the slice that drops the query.

export type NormalizedPath =
  | { ok: true; path: string; /** '' or the query with its leading '?'. */ query: string }
  | { ok: false; reason: string };

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;

/** Normalizes an origin-form request target (`/path?query`). */
export function normalizePath(target: string): NormalizedPath {
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
  return needsWork(raw) ? slowPath(raw, query) : { ok: true, path: raw, query };
}

/** True if the path has an escape, a backslash, an empty segment or a segment starting with '.'. */
function needsWork(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === PERCENT || c === BACKSLASH) return true;
    if (c === SLASH && i + 1 < path.length) {
      const next = path.charCodeAt(i + 1);
      if (next === SLASH || next === DOT) return true;
    }
  }
  return false;
}

function slowPath(raw: string, query: string): NormalizedPath {
  const decoded = decodeUnreserved(raw);
  if (typeof decoded !== 'string') return decoded;
  const segments = decoded.split('/');
  const out: string[] = [];
  let trailingSlash = false;
  // segments[0] is the empty string before the leading '/'.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] as string;
    const last = i === segments.length - 1;
    if (segment === '' || segment === '.') {
      if (last) trailingSlash = true;
    } else if (segment === '..') {
      out.pop();
      if (last) trailingSlash = true;
    } else {
      out.push(segment);
    }
  }
  const path = out.length === 0 ? '/' : `/${out.join('/')}${trailingSlash ? '/' : ''}`;
  return { ok: true, path, query };
}

function decodeUnreserved(raw: string): string | { ok: false; reason: string } {
  let out = '';
  let from = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === BACKSLASH) return { ok: false, reason: 'backslash in path' };
    if (c !== PERCENT) continue;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return { ok: false, reason: 'invalid percent-encoding in path' };
    const byte = hi * 16 + lo;
    if (byte === SLASH || byte === BACKSLASH) return { ok: false, reason: 'encoded "/" or "\\" in path' };
    out += raw.slice(from, i);
    out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    from = i + 3;
    i += 2;
  }
  return from === 0 ? raw : out + raw.slice(from);
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
