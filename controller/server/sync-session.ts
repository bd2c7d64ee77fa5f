// One agent's sync stream (POST /weft.v1/sync), from its hello to its end.
//
// The stream is already authenticated when it gets here; this file speaks the protocol of
// api/agent-sync.ts: read the hello (and refuse it with a plain HTTP status if it is wrong), then
// answer 200 and push a snapshot or delta of its node's view (state/node-scope.ts), then one
// delta per store commit that changes that view, based on what this agent holds. A commit that
// changes nothing for this node (a policy for pods elsewhere) sends nothing at once; the agent's
// revision is brought up to date by one empty delta after `catchUpMs`, so that status and the
// change log's floor do not leave it behind. Each push carries everything since the previous one, so an agent that reads slowly
// gets fewer, larger deltas rather than a growing queue: while the stream's buffer is full nothing
// is written, and on 'drain' one delta catches up. ACKs and NACKs are recorded in the registry.
// An agent from another epoch (or too far behind for the log) that lists `digests` and says what it
// holds is resumed by content: only the buckets that differ (store.resumeFor), not a snapshot.
// A bad line ends only this stream, with trailers that say why.
import type { ServerHttp2Stream } from 'node:http2';
import { constants as h2 } from 'node:http2';
import { ProtocolError, SYNC_CONTENT_TYPE, SYNC_ERROR_TRAILERS, parseAgentMessage } from '../../api/agent-sync.ts';
import type { AgentApiErrorCode, AgentMessage, Resource, SyncMessage } from '../../api/agent-sync.ts';
import type { HelloDigests } from '../../api/agent-sync-digest.ts';
import type { Logger } from '../../api/log.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { RevisionedStore } from '../state/store.ts';
import type { AgentIdentity } from './agent-auth.ts';
import type { AgentConnection, AgentRegistry } from './agent-registry.ts';
import { AgentApiError } from './errors.ts';
import { LineSplitter, LineTooLongError } from './line-splitter.ts';
import { closeAfterLinger, replyJson } from './stream-end.ts';

export interface SyncSessionOptions {
  stream: ServerHttp2Stream;
  identity: AgentIdentity;
  peer: string;
  store: RevisionedStore;
  registry: AgentRegistry;
  metrics?: ControllerMetrics;
  log: Logger;
  /** How long the agent has to send its hello. */
  helloTimeoutMs: number;
  /** Longest line accepted from an agent. */
  maxLineBytes: number;
  /** How long an ended stream waits for the agent to end its side before it is reset. */
  lingerMs: number;
  /** How long a commit that changed nothing for this node waits before an empty delta advances it. */
  catchUpMs?: number;
  onClose?: (session: SyncSession) => void;
}

type Phase = 'hello' | 'streaming' | 'closed';

export const DEFAULT_CATCH_UP_MS = 30_000;

function isEmpty(msg: SyncMessage): boolean {
  return msg.type === 'delta' && msg.upserts.length === 0 && msg.removes.length === 0 && msg.config === undefined;
}

export class SyncSession {
  readonly node: string;
  readonly #o: SyncSessionOptions;
  readonly #log: Logger;
  readonly #splitter: LineSplitter;
  #phase: Phase = 'hello';
  #helloTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #connection: AgentConnection | undefined;
  /** The agent's hello listed `routes`: it understands the Route kind (older agents refuse it). */
  #routes = false;
  #grpcRoutes = false;
  /** The agent's hello listed `gzip`: large messages go compressed. */
  #gzip = false;
  // What the agent said it holds, by content; good for the first push only (after it, the agent
  // holds whatever that push made it hold).
  #held: { epoch: string; revision: number; digests: HelloDigests } | undefined;
  #trailers: Record<string, string> = {};
  // The revision (in this store's epoch) the agent is known to hold: from its hello if same
  // epoch, then from its ACKs. A NACK sends the next push back to it.
  #agentRevision: number | undefined;
  // What the next delta is based on; undefined means the next push is a snapshot.
  #sentRevision: number | undefined;
  #maxSentRevision = -1;
  #blocked = false;
  #dirty = false;
  #catchUp: NodeJS.Timeout | undefined;

  constructor(opts: SyncSessionOptions) {
    this.#o = opts;
    this.node = opts.identity.node;
    this.#log = opts.log.child({ node: this.node, peer: opts.peer });
    this.#splitter = new LineSplitter(opts.maxLineBytes);
  }

  start(): void {
    const { stream } = this.#o;
    this.#helloTimer = setTimeout(() => this.#refuse(new AgentApiError('BAD_REQUEST', `no hello within ${this.#o.helloTimeoutMs} ms`)), this.#o.helloTimeoutMs);
    stream.on('data', (chunk: Buffer) => this.#guard(() => this.#onData(chunk)));
    stream.on('end', () => this.#onEnd());
    stream.on('error', (err: Error) => this.#log.debug('sync stream error', { error: err }));
    stream.on('close', () => this.#finish('stream closed'));
  }

  /** Ends the stream with an error code in the trailers (shutdown), or refuses it before the hello. */
  end(code: AgentApiErrorCode, message: string): void {
    this.#fail(new AgentApiError(code, message));
  }

  #onData(chunk: Buffer): void {
    if (this.#phase === 'closed') return;
    let got: string[];
    try {
      got = this.#splitter.push(chunk);
    } catch (err) {
      if (err instanceof LineTooLongError) return this.#fail(new AgentApiError(this.#phase === 'hello' ? 'BAD_REQUEST' : 'PROTOCOL_ERROR', err.message));
      throw err;
    }
    for (const line of got) {
      if (this.#closed()) return;
      if (line.trim() === '') continue; // tolerated keep-alive
      let msg: AgentMessage;
      try {
        msg = parseAgentMessage(line);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        return this.#fail(new AgentApiError(this.#phase === 'hello' ? 'BAD_REQUEST' : 'PROTOCOL_ERROR', `malformed message: ${err.message}`));
      }
      if (this.#phase === 'hello') this.#onHello(msg);
      else this.#onMessage(msg);
    }
  }

  // A bug here must cost this stream, not the process (an event handler that throws is fatal)
  // nor the other agents (the store calls every subscriber in turn).
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error('sync stream failed', { error: err });
      this.#fail(new AgentApiError('INTERNAL', 'internal error'));
    }
  }

  // The agent finished its side: it is leaving. Finish ours, without an error if it said hello.
  #onEnd(): void {
    if (this.#phase === 'hello') return this.#refuse(new AgentApiError('BAD_REQUEST', 'the stream ended before a hello'));
    if (this.#phase === 'closed') return;
    this.#finish('agent ended the stream');
    if (this.#o.stream.destroyed) return;
    this.#o.stream.end();
    closeAfterLinger(this.#o.stream, this.#o.lingerMs);
  }

  // A method, not a field read, so that the compiler does not narrow #phase across calls that change it.
  #closed(): boolean {
    return this.#phase === 'closed';
  }

  #onHello(msg: AgentMessage): void {
    clearTimeout(this.#helloTimer);
    if (msg.type !== 'hello') return this.#refuse(new AgentApiError('BAD_REQUEST', `the first message must be a hello, not ${msg.type}`));
    if (msg.node !== this.node) {
      return this.#refuse(new AgentApiError('NODE_MISMATCH', `hello names node "${msg.node}" but the token is bound to node "${this.node}"`));
    }
    const { stream, store, registry } = this.#o;
    if (stream.destroyed) return this.#finish('stream closed before the hello was answered');
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: SYNC_CONTENT_TYPE }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(this.#trailers));
    this.#phase = 'streaming';
    this.#routes = msg.features?.includes('routes') ?? false;
    this.#grpcRoutes = this.#routes && (msg.features?.includes('grpcroutes') ?? false);
    this.#gzip = msg.features?.includes('gzip') ?? false;
    this.#connection = registry.connect(this.node, { agentVersion: msg.agentVersion, peer: this.#o.peer });
    if (msg.epoch === store.epoch && msg.revision !== undefined) {
      this.#agentRevision = msg.revision;
      this.#sentRevision = msg.revision;
    }
    if (msg.features?.includes('digests') && msg.digests && msg.epoch !== undefined && msg.revision !== undefined) {
      this.#held = { epoch: msg.epoch, revision: msg.revision, digests: msg.digests };
    }
    this.#log.info('agent connected', { agentVersion: msg.agentVersion, resumeEpoch: msg.epoch, resumeRevision: msg.revision, revision: store.revision });
    this.#unsubscribe = store.subscribe(() => this.#guard(() => this.#push(false)));
    this.#push(true);
  }

  #onMessage(msg: AgentMessage): void {
    const { store, metrics } = this.#o;
    const connection = this.#connection as AgentConnection;
    switch (msg.type) {
      case 'hello':
        return this.#fail(new AgentApiError('PROTOCOL_ERROR', 'hello may only be the first message'));
      case 'ack':
        if (msg.epoch !== store.epoch || msg.revision > this.#maxSentRevision) {
          return this.#fail(new AgentApiError('PROTOCOL_ERROR', `ack for ${msg.epoch}/${msg.revision}, which this stream never sent`));
        }
        metrics?.replies.inc({ result: 'ack' });
        if (this.#agentRevision === undefined || msg.revision > this.#agentRevision) this.#agentRevision = msg.revision;
        connection.acked(msg.epoch, msg.revision);
        return;
      case 'nack': {
        // Recorded whatever it names: an agent that could not even parse a message reports its
        // own (epoch, revision), possibly from another epoch.
        metrics?.replies.inc({ result: 'nack' });
        connection.nacked(msg.epoch, msg.revision, msg.reason);
        this.#log.warn('agent refused a sync message', { epoch: msg.epoch, revision: msg.revision, reason: msg.reason.slice(0, 256) });
        if (msg.epoch !== store.epoch || msg.revision > this.#maxSentRevision) return;
        // The agent kept its last good state; base what follows on that. Resending now would
        // only be refused again: wait for the state to move on, unless it already has.
        this.#sentRevision = this.#agentRevision;
        if (store.revision > msg.revision) this.#push(false);
        return;
      }
    }
  }

  /** `force`: send even an empty delta (it tells a reconnecting agent it is current, or advances it). */
  #push(force: boolean): void {
    if (this.#phase !== 'streaming') return;
    if (this.#blocked) {
      this.#dirty = true;
      return;
    }
    this.#dirty = false;
    const { store, stream } = this.#o;
    const held = this.#held;
    this.#held = undefined;
    const msg =
      (this.#sentRevision === undefined ? null : store.deltaFor(this.node, this.#sentRevision)) ?? (held ? store.resumeFor(this.node, held, this.#routes) : null) ?? store.snapshotFor(this.node);
    if (msg.type === 'delta' && msg.base === msg.revision && !force) return;
    if (!force && isEmpty(msg)) {
      this.#catchUp ??= setTimeout(() => {
        this.#catchUp = undefined;
        this.#guard(() => this.#push(true));
      }, this.#o.catchUpMs ?? DEFAULT_CATCH_UP_MS);
      this.#catchUp.unref();
      return;
    }
    clearTimeout(this.#catchUp);
    this.#catchUp = undefined;
    this.#sentRevision = msg.revision;
    this.#maxSentRevision = Math.max(this.#maxSentRevision, msg.revision);
    this.#connection?.sent(msg.epoch, msg.revision);
    this.#o.metrics?.pushes.inc({ type: msg.type === 'delta' && msg.resume ? 'resume' : msg.type });
    this.#log.debug('pushed', { type: msg.type, revision: msg.revision, ...(msg.type === 'delta' ? { base: msg.base } : {}) });
    let flowing = true;
    for (const chunk of store.encode(this.#grpcRoutes ? msg : withoutRoutes(msg, this.#routes), this.#gzip)) flowing = stream.write(chunk);
    if (!flowing) {
      this.#blocked = true;
      stream.once('drain', () => {
        this.#blocked = false;
        if (this.#dirty) this.#push(false);
      });
    }
  }

  /** Before the 200: a plain HTTP answer. After: trailers. */
  #fail(err: AgentApiError): void {
    if (this.#phase === 'hello') return this.#refuse(err);
    if (this.#phase === 'closed') return;
    this.#o.metrics?.streamsRefused.inc({ code: err.code });
    this.#log.warn('ending sync stream', { code: err.code, reason: err.message });
    this.#trailers = { [SYNC_ERROR_TRAILERS.code]: err.code, [SYNC_ERROR_TRAILERS.message]: headerSafe(err.message) };
    const { stream } = this.#o;
    this.#finish(`${err.code}: ${err.message}`);
    if (stream.destroyed) return;
    stream.end();
    closeAfterLinger(stream, this.#o.lingerMs);
  }

  #refuse(err: AgentApiError): void {
    if (this.#phase !== 'hello') return this.#fail(err);
    this.#o.metrics?.streamsRefused.inc({ code: err.code });
    this.#log.warn('refused sync stream', { code: err.code, reason: err.message });
    const { stream } = this.#o;
    this.#finish(`${err.code}: ${err.message}`);
    replyJson(stream, err.status, err.body(), this.#o.lingerMs);
  }

  #finish(reason: string): void {
    if (this.#phase === 'closed') return;
    const wasStreaming = this.#phase === 'streaming';
    this.#phase = 'closed';
    clearTimeout(this.#helloTimer);
    clearTimeout(this.#catchUp);
    this.#unsubscribe?.();
    this.#connection?.closed(reason);
    if (wasStreaming) this.#log.info('agent disconnected', { reason });
    this.#o.onClose?.(this);
  }
}

/** Header values must not contain line breaks; keep a reason readable and short. */
function headerSafe(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

/**
 * The message without Route resources, for an agent from before routing: it would refuse the whole
 * message for a kind it does not know and stop taking updates. The same object when there are none
 * (its encoding is cached).
 */
/** The message without the routes an agent cannot take: every route, or (keepHttp) GRPCRoutes only. */
function withoutRoutes(msg: SyncMessage, keepHttp: boolean): SyncMessage {
  // Route keys start with the route's kind (controller/route/controller.ts).
  const drop = (r: { kind: string; key: string }) => r.kind === 'Route' && (!keepHttp || r.key.startsWith('GRPCRoute/'));
  const dropResource = (r: Resource) => drop({ kind: r.kind, key: r.value.key });
  if (msg.type === 'snapshot') {
    if (!msg.resources.some(dropResource)) return msg;
    return { ...msg, resources: msg.resources.filter((r) => !dropResource(r)) };
  }
  if (!msg.upserts.some(dropResource) && !msg.removes.some(drop)) return msg;
  return { ...msg, upserts: msg.upserts.filter((r) => !dropResource(r)), removes: msg.removes.filter((r) => !drop(r)) };
}
