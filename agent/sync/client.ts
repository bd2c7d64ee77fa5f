// The agent's end of the sync protocol (api/agent-sync.ts): one HTTP/2 stream to the controller,
// reconnected with backoff, resumed from the last applied (epoch, revision) and, for a controller
// of another epoch, from content digests of what it holds. While the
// controller is away the store keeps serving its last good state.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { SyncMessage } from '../../api/agent-sync.ts';
import type { HelloDigests } from '../../api/agent-sync-digest.ts';
import { AGENT_FEATURES, CONTROLLER_SERVER_NAME, parseSyncMessage, SYNC_ERROR_TRAILERS, SYNC_PATH, type AgentMessage } from '../../api/agent-sync.ts';
import type { ApplyResult } from '../state/store.ts';

/**
 * What the client fills: the agent's StateStore, or a lighter one (bench/scale-agents.ts runs a
 * thousand clients in one process and keeps only what it measures).
 */
export interface SyncTarget {
  readonly epoch: string | undefined;
  readonly revision: number;
  apply(msg: SyncMessage): ApplyResult;
  /**
   * What it holds, by content, so that a controller of another epoch (restarted, another replica)
   * can send only what differs instead of a snapshot.
   */
  digests?(): HelloDigests | undefined;
}

/** The longest retry-after the agent honours; a controller cannot park its agents for longer. */
const MAX_RETRY_AFTER_S = 60;

export interface SyncClientOptions {
  /** e.g. https://10.200.0.1:15012 */
  url: string;
  node: string;
  /** CA bundle that signs the controller's serving certificate. */
  caFile: string;
  /** Service-account token, re-read on every connect (kubelet/TokenRequest rotate it). */
  tokenFile: string;
  /** The controller's DNS name in its certificate. */
  serverName?: string;
  agentVersion: string;
  store: SyncTarget;
  /** The address to connect from (simulated agents on one host each use their own). */
  localAddress?: string;
  /** Called after each applied message (checkpointing, metrics). */
  onApplied?: (revision: number) => void;
  /** Called with each message as it arrives, before it is applied, and the bytes of its line. */
  onMessage?: (msg: SyncMessage, bytes: number) => void;
  /** Called each time the controller accepts the stream (it is reachable again). */
  onConnected?: () => void;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export class SyncClient {
  readonly #o: SyncClientOptions;
  #session: ClientHttp2Session | undefined;
  #stream: ClientHttp2Stream | undefined;
  #stopped = false;
  #attempt = 0;
  // Numbers connection attempts; a retry moves it on, so that a late event of an abandoned
  // connection, or an attempt that was still reading its credentials, does nothing.
  #generation = 0;
  #timer: NodeJS.Timeout | undefined;
  connected = false;
  lastError = '';
  lastSyncAt: Date | undefined;

  constructor(o: SyncClientOptions) {
    this.#o = o;
  }

  start(): void {
    void this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#stream?.close();
    this.#session?.close();
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const o = this.#o;
    const attempt = ++this.#generation;
    let token: string;
    let ca: Buffer;
    try {
      [token, ca] = await Promise.all([readFile(o.tokenFile, 'utf8').then((t) => t.trim()), readFile(o.caFile)]);
    } catch (e) {
      if (attempt === this.#generation) this.#retry(`reading credentials: ${(e as Error).message}`);
      return;
    }
    // A retry while the files were read has started over: two live streams would feed one store
    // messages on two bases, and each would refuse the other's.
    if (attempt !== this.#generation || this.#stopped || this.#timer) return;
    const session = connect(o.url, { ca, servername: o.serverName ?? CONTROLLER_SERVER_NAME, minVersion: 'TLSv1.3', ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    this.#session = session;
    // Events of a connection given up on (they can come late on a busy process) are not about the current one.
    const current = (): boolean => this.#session === session && attempt === this.#generation;
    session.on('error', (e: Error) => current() && this.#retry(`connection: ${e.message}`));
    session.on('close', () => current() && this.#retry('connection closed'));
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: SYNC_PATH,
      authorization: `Bearer ${token}`,
      'content-type': 'application/x-ndjson',
    });
    this.#stream = stream;
    stream.setEncoding('utf8');
    stream.on('response', (headers) => {
      if (!current()) return;
      const status = Number(headers[constants.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        // A controller shedding load (429, 503) says when to come back; a fleet that ignored it
        // would return on its own schedule and be refused again.
        const retryAfter = Number(headers['retry-after']);
        this.#retry(`controller answered ${status}`, Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, MAX_RETRY_AFTER_S) * 1000 : 0);
        return;
      }
      this.connected = true;
      this.#attempt = 0;
      o.log('info', 'connected to the controller', { url: o.url, epoch: o.store.epoch, revision: o.store.revision });
      o.onConnected?.();
    });
    // The controller ends a stream it refuses with error trailers: reconnect now, not when the
    // controller gives up on our half of the stream.
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      const code = t[SYNC_ERROR_TRAILERS.code];
      if (code && current()) this.#retry(`controller ended the stream: ${String(code)} ${String(t[SYNC_ERROR_TRAILERS.message] ?? '')}`);
    });
    stream.on('error', (e: Error) => current() && this.#retry(`stream: ${e.message}`));
    stream.on('close', () => current() && this.#retry('stream closed'));
    const digests = o.store.epoch ? o.store.digests?.() : undefined;
    this.#send({
      type: 'hello',
      node: o.node,
      agentVersion: o.agentVersion,
      features: [...AGENT_FEATURES],
      ...(o.store.epoch ? { epoch: o.store.epoch, revision: o.store.revision } : {}),
      ...(digests ? { digests } : {}),
    });

    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('error', () => {}); // the stream's own error handler reconnects
    lines.on('line', (line) => {
      if (line.length === 0) return; // heartbeat
      // Lines still split from a chunk after this stream was given up on (a refused delta) are stale.
      if (!current() || stream.closed || stream.destroyed) return;
      this.#handle(line);
    });
  }

  #handle(line: string): void {
    const o = this.#o;
    let msg;
    try {
      msg = parseSyncMessage(line);
    } catch (e) {
      // Refuse the message, keep the state; the controller sees why.
      const reason = (e as Error).message;
      o.log('warn', 'refused a malformed sync message', { reason });
      this.#send({ type: 'nack', epoch: o.store.epoch ?? '', revision: o.store.revision, reason });
      return;
    }
    o.onMessage?.(msg, Buffer.byteLength(line) + 1);
    const r = o.store.apply(msg);
    if (!r.ok) {
      o.log('warn', 'sync message does not apply; resyncing', { reason: r.reason });
      this.#send({ type: 'nack', epoch: msg.epoch, revision: msg.revision, reason: r.reason });
      // A fresh connection with our (epoch, revision) gets a consistent delta or snapshot.
      this.#stream?.close();
      return;
    }
    this.lastSyncAt = new Date();
    this.#send({ type: 'ack', epoch: msg.epoch, revision: msg.revision });
    o.onApplied?.(msg.revision);
  }

  #send(m: AgentMessage): void {
    const s = this.#stream;
    if (s && !s.destroyed && s.writable) s.write(`${JSON.stringify(m)}\n`);
  }

  /** Reconnects after the backoff, and not before `notBeforeMs` (a retry-after) when one is given. */
  #retry(why: string, notBeforeMs = 0): void {
    if (this.#stopped || this.#timer) return;
    this.#generation++;
    if (this.connected || this.#attempt === 0) this.#o.log('warn', 'controller unreachable; keeping the last good state', { why });
    this.connected = false;
    this.lastError = why;
    this.#stream?.destroy();
    this.#session?.destroy();
    this.#stream = undefined;
    this.#session = undefined;
    // 0.5 s doubling to 15 s, with jitter so that a fleet of agents does not reconnect in step.
    const backoff = Math.min(15_000, 500 * 2 ** this.#attempt++) * (0.75 + Math.random() / 2);
    // Spread over the quarter after the retry-after, so that agents told the same do not return in step.
    const delay = Math.max(backoff, notBeforeMs * (1 + Math.random() / 4));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, delay);
  }
}
