// When a bearer token says it expires, for one purpose only: how long a review the API server
// already accepted may be reused. Nothing here is verified and nothing here authenticates: a
// forged `exp` can at most make the controller ask the API server again sooner (a lifetime is
// always capped by the caller), never accept a token the API server did not.
//
// Projected service-account tokens are JWS compact serializations: three base64url parts, the
// second a JSON object whose `exp` is seconds since the epoch.

// A service-account token's payload is a few hundred bytes; refuse to decode a large one.
const MAX_PAYLOAD_CHARS = 8 * 1024;

/** `exp` of a JWT as milliseconds since the epoch, or undefined when the token carries none. */
export function jwtExpiry(token: string): number | undefined {
  const first = token.indexOf('.');
  if (first <= 0) return undefined;
  const second = token.indexOf('.', first + 1);
  if (second === -1 || second - first - 1 > MAX_PAYLOAD_CHARS) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof payload !== 'object' || payload === null) return undefined;
  const exp = (payload as { exp?: unknown }).exp;
  return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp * 1000 : undefined;
}
