// Upstream HTTP/1.1 connections kept open between routed requests, one pool per source identity
// (a connection was opened with that pod's certificate, or admitted as that pod, so only its
// requests may use it) and, inside it, per endpoint (node:http's Agent keys by host and port).
// Without it every request paid for an HBONE stream and, at the destination, a TCP connection to
// the pod (bench/routing.ts).
//
// The connections are whatever upstream.ts opened: an HBONE stream, a socket, or one end of an
// in-memory pair served by the destination's L7 policy step. They get the few socket methods the
// Agent calls, and are destroyed once the far end finished: a half-closed stream left in the pool
// would take the next request and never answer it.
import { Agent, type ClientRequestArgs } from 'node:http';
import type { Duplex } from 'node:stream';
import type { UpstreamResult } from './upstream.ts';

/** Idle upstream connections are closed after this long. */
const IDLE_MS = 30_000;

/** What a request passes to the pool so that a new connection can be opened for it. */
export interface PoolRequestOptions extends ClientRequestArgs {
  weftOpen: () => Promise<UpstreamResult>;
}

/** An error opening an upstream connection: `refused` when policy at the destination said no. */
export class UpstreamOpenError extends Error {
  readonly refused: boolean;
  constructor(reason: string, refused: boolean) {
    super(reason);
    this.refused = refused;
  }
}

type SocketLike = Duplex & { setKeepAlive?: unknown; ref?: unknown; unref?: unknown; setNoDelay?: unknown; setTimeout?: unknown };

function asPooled(stream: Duplex): Duplex {
  const s = stream as SocketLike;
  s.setKeepAlive ??= () => s;
  s.ref ??= () => s;
  s.unref ??= () => s;
  s.setNoDelay ??= () => s;
  s.setTimeout ??= () => s;
  // Let node:http see the end first (a response delimited by the close completes on it).
  s.once('end', () => setImmediate(() => s.destroy()));
  return s;
}

export class UpstreamPool extends Agent {
  constructor() {
    super({ keepAlive: true, timeout: IDLE_MS, maxFreeSockets: 64, scheduling: 'lifo' });
  }

  // The Agent accepts a connection through the callback when createConnection returns nothing.
  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex {
    const open = (options as PoolRequestOptions).weftOpen;
    open().then(
      (r) => (r.ok ? callback?.(null, asPooled(r.stream)) : callback?.(new UpstreamOpenError(r.reason, r.refused), undefined as unknown as Duplex)),
      (e: unknown) => callback?.(e as Error, undefined as unknown as Duplex),
    );
    return undefined as unknown as Duplex;
  }
}
