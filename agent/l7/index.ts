// The L7 HTTP path: HTTP terminated on the client side of an inbound connection, every request
// normalized and authorized, allowed requests forwarded to the pod. See serve.ts.

export { serveHttp } from './serve.ts';
export { DEFAULT_PATH_OPTIONS, normalizePath, type NormalizedPath, type PathOptions } from './path.ts';
export { DEFAULT_IDLE_TIMEOUT_MS } from './connection.ts';
export { DEFAULT_L7_LIMITS, type L7Limits } from './limits.ts';
export type { HttpRequestInfo, L7Options, L7Outcome, L7Session, RequestRecord, RequestVerdict } from './types.ts';
