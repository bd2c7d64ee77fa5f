// What one client connection on the L7 path may hold of the agent: how long a request head may
// take, how large it may be, how many requests may wait behind the one being forwarded. Without
// them a client that sends a head one byte at a time, or pipelines thousands of requests, keeps
// agent memory and a connection for as long as the idle timeout (1 h).
//
// The HTTP servers that parse are shared by all connections (http1.ts, http2.ts), so limits are
// per process: main.ts sets them once from the environment, and a session may name others (tests
// do), which then get servers of their own.

export interface L7Limits {
  /** From the first byte of a request head (or of the protocol sniff) to its end. 0 disables. */
  headersTimeoutMs: number;
  /** Request head size: HTTP/1 start line + fields (431 beyond), HTTP/2 header list. */
  maxHeaderBytes: number;
  /** HTTP/1: requests queued behind the one being forwarded; reading stops at this many, and requests beyond it get 503. */
  maxPipelinedRequests: number;
  /** HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS announced to the client. */
  maxConcurrentStreams: number;
}

export const DEFAULT_L7_LIMITS: Readonly<L7Limits> = Object.freeze({
  headersTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  maxPipelinedRequests: 32,
  maxConcurrentStreams: 100,
});

export function resolveLimits(limits: Partial<L7Limits> | undefined): Readonly<L7Limits> {
  return limits === undefined ? DEFAULT_L7_LIMITS : { ...DEFAULT_L7_LIMITS, ...limits };
}

/** One key per distinct set of limits, for the shared servers. */
export function limitsKey(l: L7Limits): string {
  return `${l.headersTimeoutMs}/${l.maxHeaderBytes}/${l.maxPipelinedRequests}/${l.maxConcurrentStreams}`;
}
