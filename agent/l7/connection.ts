// One downstream connection on the L7 path, whichever protocol it speaks: the counters, the idle
// timer, the upstream connections it opened, and the rules for ending. The protocol handlers
// (http1.ts, http2.ts) call in when a request starts and ends and when they need the upstream; the
// agent sees it as an L7Session.
//
// The session is done once both sides are closed: the client, and every upstream socket it dialled
// (a dial still in flight counts as open). Closing the client releases the upstream.

import net from 'node:net';
import { CodedError } from '../../api/coded-error.ts';
import { addAbortSignal, type Duplex } from 'node:stream';
import { type L7Limits, resolveLimits } from './limits.ts';
import { type PathOptions, resolvePathOptions } from './path.ts';
import type { HttpRequestInfo, L7Options, L7Outcome, L7Session, RequestRecord, RequestVerdict } from './types.ts';

export const DEFAULT_IDLE_TIMEOUT_MS = 60 * 60 * 1000;

/** After an idle close starts, how long the client gets to close its side before it is destroyed. */
const GRACEFUL_CLOSE_MS = 5000;

export type L7ErrorCode =
  | 'SESSION_CLOSED' // the session ended before the upstream was needed
  | 'UPSTREAM_UNAVAILABLE'; // dial() failed

export class L7Error extends CodedError<L7ErrorCode> {
  override readonly name = 'L7Error';
}

/** What a protocol handler does when the session ends. */
export interface ProtocolHandler {
  /** No request in flight for the idle timeout: close gracefully (end, GOAWAY). */
  drain(): void;
  /**
   * Requests are in flight but nothing moved for the idle timeout: prove the client is still
   * there (an HTTP/2 PING), or close. A client that reset its connection while the agent was not
   * reading would otherwise hold the session, and its upstream, until the process ends.
   */
  checkAlive?(): void;
  /** Tear down now, both sides; also releases the upstream once the client is gone. */
  destroy(): void;
}

function ignoreError(): void {}

export const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException | undefined)?.code ?? (err instanceof Error ? err.message : String(err));

export class L7Connection implements L7Session {
  readonly client: Duplex;
  readonly done: Promise<L7Outcome>;
  readonly limits: Readonly<L7Limits>;
  readonly pathOptions: Readonly<PathOptions>;
  readonly #options: L7Options;
  readonly #resolve: (outcome: L7Outcome) => void;
  #handler: ProtocolHandler | undefined;
  #idle: NodeJS.Timeout | undefined;
  #requests = 0;
  #denied = 0;
  #inflight = 0;
  #error = '';
  #clientOpen = true;
  #upstreamsOpen = 0;
  #dialing = 0;
  #ended = false;
  #resolved = false;

  constructor(client: Duplex, options: L7Options) {
    this.client = client;
    this.#options = options;
    this.limits = resolveLimits(options.limits);
    this.pathOptions = resolvePathOptions(options.path);
    const { promise, resolve } = Promise.withResolvers<L7Outcome>();
    this.done = promise;
    this.#resolve = resolve;
    client.on('error', (err) => this.fail(`client: ${errorCode(err)}`));
    client.once('close', () => {
      this.#clientOpen = false;
      this.#end();
    });
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (idleTimeoutMs > 0) this.#idle = setTimeout(() => this.#onIdle(), idleTimeoutMs).unref();
  }

  /** True once the session is ending: close() was called or the client went away. */
  get ended(): boolean {
    return this.#ended;
  }

  get inflight(): number {
    return this.#inflight;
  }

  setHandler(handler: ProtocolHandler): void {
    this.#handler = handler;
  }

  close(reason: string): void {
    if (this.#ended) return;
    this.fail(reason);
    abort(this.client);
    this.#end();
  }

  /** Records the first error; the outcome reports it. */
  fail(error: string): void {
    this.#error ||= error;
  }

  /** A request has arrived (its headers). */
  begin(): void {
    this.#requests += 1;
    this.#inflight += 1;
  }

  /** Policy's verdict; a policy that throws denies (fail closed). */
  authorize(req: HttpRequestInfo): RequestVerdict {
    try {
      return this.#options.authorize(req);
    } catch {
      return { allow: false, reason: 'policy error' };
    }
  }

  countDenied(): void {
    this.#denied += 1;
  }

  /** A request has completed (or failed); reports it and restarts the idle clock. */
  finish(req: HttpRequestInfo, status: number, started: number, grpcStatus: number | undefined, denied: string | undefined): void {
    this.#inflight -= 1;
    if (this.#inflight === 0) this.#idle?.refresh();
    if (!this.#options.onRequest) return;
    const record: RequestRecord = { req, status, durationMs: performance.now() - started };
    if (grpcStatus !== undefined) record.grpcStatus = grpcStatus;
    if (denied !== undefined) record.denied = denied;
    try {
      this.#options.onRequest(record);
    } catch {
      // A failing access log must not take the connection (or the agent) down.
    }
  }

  /** Dials the pod; the socket counts as open until it closes. Throws L7Error. */
  async dialUpstream(): Promise<net.Socket> {
    if (this.#ended) throw new L7Error('SESSION_CLOSED', 'the session has ended');
    this.#dialing += 1;
    let socket: net.Socket;
    try {
      socket = await this.#options.dial();
    } catch (err) {
      this.#dialing -= 1;
      this.#maybeDone();
      throw new L7Error('UPSTREAM_UNAVAILABLE', `dial failed: ${errorCode(err)}`, { cause: err });
    }
    this.#dialing -= 1;
    this.#upstreamsOpen += 1;
    // The agent or HTTP/2 session that takes the socket reports its errors; this keeps an error in
    // the moment before they attach (or after they let go) from being an uncaught exception.
    socket.on('error', ignoreError);
    socket.once('close', () => {
      this.#upstreamsOpen -= 1;
      this.#maybeDone();
    });
    if (this.#ended) {
      socket.destroy();
      throw new L7Error('SESSION_CLOSED', 'the session has ended');
    }
    socket.setNoDelay(true);
    return socket;
  }

  #onIdle(): void {
    if (this.#ended) return;
    if (this.#inflight > 0) {
      this.#handler?.checkAlive?.();
      this.#idle?.refresh();
      return;
    }
    if (this.#handler) this.#handler.drain();
    else closeGracefully(this.client);
  }

  #end(): void {
    if (!this.#ended) {
      this.#ended = true;
      clearTimeout(this.#idle);
      this.#handler?.destroy();
    }
    this.#maybeDone();
  }

  #maybeDone(): void {
    if (this.#resolved || this.#clientOpen || this.#upstreamsOpen > 0 || this.#dialing > 0) return;
    this.#resolved = true;
    this.#resolve({ requests: this.#requests, denied: this.#denied, error: this.#error });
  }
}

/**
 * Ends the client abruptly, so that it cannot mistake the end for a clean close: a TCP RST for a
 * socket, RST_STREAM(CANCEL) for a tunnel stream (a stream destroyed with an AbortError sends
 * only the reset, without the END_STREAM that a plain close would send first).
 */
export function abort(client: Duplex): void {
  if (client.destroyed) return;
  if (client instanceof net.Socket) {
    // Once our FIN is out libuv cannot reset the socket any more; then it is a plain destroy.
    if (client.writableEnded) client.destroy();
    else client.resetAndDestroy();
    return;
  }
  const controller = new AbortController();
  addAbortSignal(controller.signal, client);
  controller.abort();
}

/** Ends the client's writable side and destroys it if it has not closed after a grace period. */
export function closeGracefully(client: Duplex): void {
  if (client.destroyed) return;
  client.end();
  destroyAfterGrace(client);
}

/** Destroys the client if it is still open after the grace period of a graceful close. */
export function destroyAfterGrace(client: Duplex): void {
  if (client.destroyed) return;
  const timer = setTimeout(() => client.destroy(), GRACEFUL_CLOSE_MS).unref();
  client.once('close', () => clearTimeout(timer));
}
