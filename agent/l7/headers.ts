// Request headers as policy must see them: exactly what is forwarded. Node keeps only the first
// value of some fields (HTTP/1: authorization, host, user-agent, content-type, ...; HTTP/2 a
// larger set) and joins or lists the rest. A field sent twice would then be one thing to a rule
// that reads every value and another to the backend (or the other way round), so a request that
// repeats any of these fields is refused with 400 instead of being guessed at.
//
// Also here: the one canonical authority of a request, when it is named twice (an absolute-form
// target and Host in HTTP/1.1, `:authority` and `host` in HTTP/2). Two names that disagree are
// refused: policy and the backend could each pick a different one.

import { hostOf } from './request-info.ts';

/**
 * Fields Node keeps one value of: its HTTP/1 parser's (lib/_http_incoming.js matchKnownFields) and
 * its HTTP/2 core's (kSingleValueHeaders), with `host` and the pseudo-headers, which are singular
 * by definition.
 */
export const SINGLETON_HEADERS: ReadonlySet<string> = new Set([
  // HTTP/1 (lib/_http_incoming.js)
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
  // HTTP/2 adds these (lib/internal/http2/util.js)
  ':authority',
  ':method',
  ':path',
  ':protocol',
  ':scheme',
  ':status',
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'content-encoding',
  'content-language',
  'content-location',
  'content-md5',
  'content-range',
  'date',
  'dnt',
  'if-match',
  'if-none-match',
  'if-range',
  'range',
  'tk',
  'upgrade-insecure-requests',
  'x-content-type-options',
]);

/**
 * The first singleton field that occurs more than once in a flat [name, value, ...] list (Node's
 * rawHeaders, as received: any case), or undefined.
 */
export function repeatedSingleton(rawHeaders: readonly string[]): string | undefined {
  let seen: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!SINGLETON_HEADERS.has(name)) continue;
    seen ??= new Set();
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}

/**
 * True if two authorities name the same origin: the same host as policy compares hosts (hostOf:
 * case, trailing dot) and the same port, an absent port being the scheme's default.
 */
export function sameAuthority(a: string, b: string, scheme: string): boolean {
  return hostOf(a) === hostOf(b) && portOf(a, scheme) === portOf(b, scheme);
}

function portOf(authority: string, scheme: string): string {
  const close = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  const port = colon > close ? authority.slice(colon + 1) : '';
  return port === '' ? (scheme.toLowerCase() === 'https' ? '443' : '80') : port;
}
