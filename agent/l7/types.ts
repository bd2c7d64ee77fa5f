// The contract of the L7 HTTP path: what the agent hands in (a client connection, a way to reach
// the pod, a per-request policy decision) and what it gets back (per-request records, a session
// it can end). Nothing here depends on HTTP/1 or HTTP/2; the two protocol handlers implement it.

import type net from 'node:net';
import type { L7Limits } from './limits.ts';
import type { PathOptions } from './path.ts';

/** One request as policy sees it. Everything is normalized before policy looks at it. */
export interface HttpRequestInfo {
  /** Upper-case. */
  method: string;
  /** Normalized (see normalizeTarget), without query. Forwarded upstream in this form. */
  path: string;
  /** Lower-case, without port or trailing dot (Host, `:authority`, or an absolute-form target). */
  host: string;
  /**
   * Lower-case name; the value as forwarded, a repeated list field's values joined with ', '
   * (cookies with '; '). Requests repeating a singleton field (headers.ts) never reach policy.
   */
  header(name: string): string | undefined;
  protocol: 'http/1.1' | 'h2';
  /** content-type starts with application/grpc. */
  grpc: boolean;
}

/**
 * `headers`: fields to set (lower-case names, replacing any the client sent) on the request as it
 * is forwarded; the agent's trace context, when tracing is on.
 */
export type RequestVerdict = { allow: true; headers?: Readonly<Record<string, string>> } | { allow: false; reason: string };

/** What onRequest reports once per request, when it completes. */
export interface RequestRecord {
  req: HttpRequestInfo;
  /** The status the client got (403 when denied, 502/503 for upstream failures). */
  status: number;
  /** grpc-status from the response trailers (or a trailers-only response), for gRPC requests. */
  grpcStatus?: number;
  /** The policy's reason, when the request was denied. */
  denied?: string;
  durationMs: number;
}

export interface L7Options {
  /** Opens the upstream TCP connection to the pod (called lazily; one upstream per downstream connection). */
  dial(): Promise<net.Socket>;
  authorize(req: HttpRequestInfo): RequestVerdict;
  /** Called once per request when it completes (for access logs / metrics). */
  onRequest?(r: RequestRecord): void;
  /** Close a connection with no request in flight for this long. Default 1 h; 0 disables. */
  idleTimeoutMs?: number;
  /** Header timeout, head size, pipelining and stream caps; unset fields take the process defaults (limits.ts). */
  limits?: Partial<L7Limits>;
  /** Path normalization; unset fields take the process defaults (path.ts). */
  path?: Partial<PathOptions>;
}

export interface L7Outcome {
  /** Requests seen, denied ones included. */
  requests: number;
  denied: number;
  /** Empty when the session ended cleanly; otherwise the first error (or the close() reason). */
  error: string;
}

export interface L7Session {
  readonly done: Promise<L7Outcome>;
  /** Tears the session down at once (both sides), e.g. when a policy change denies the connection. */
  close(reason: string): void;
}
