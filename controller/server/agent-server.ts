// The agent API (DESIGN.md: controller port 15012): HTTP/2 over TLS 1.3, two routes from
// api/agent-sync.ts. Every request is authenticated (agent-auth.ts) before anything else; sync
// streams live in sync-session.ts, certificate requests in sign-handler.ts.
//
// Any pod can connect here. A new connection is counted against its source's cap of
// unauthenticated connections before its TLS handshake (source-limiter.ts) and stops counting
// once it authenticates an agent; from then on its requests skip the per-source limits. Streams
// per connection are capped by the HTTP/2 SETTINGS, so one connection cannot open thousands.
//
// Connections are watched with HTTP/2 PINGs: a node that vanished (power loss, partition) leaves
// no FIN behind, and its stream would otherwise count as connected forever. A connection that
// opens no stream for a while is closed, so that idle TLS sockets cannot pile up.
import { createSecureServer, constants as h2 } from 'node:http2';
import type { Http2SecureServer, Http2Session, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { CONTROLLER_PORT, ProtocolError, SIGN_PATH, SYNC_PATH, parseSignRequest } from '../../api/agent-sync.ts';
import type { Logger } from '../../api/log.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { RevisionedStore } from '../state/store.ts';
import type { Socket } from 'node:net';
import type { AgentAuthenticator, AgentIdentity } from './agent-auth.ts';
import type { AgentRegistry } from './agent-registry.ts';
import { AgentApiError } from './errors.ts';
import { sampledRefusalLog } from './refusal-log.ts';
import { handleSign } from './sign-handler.ts';
import { sourceOf } from './source-limiter.ts';
import type { ConnectionTicket, SourceLimiter } from './source-limiter.ts';
import type { WorkloadSigner } from './signer.ts';
import { replyJson } from './stream-end.ts';
import { SyncSession } from './sync-session.ts';

/** PEM inputs for the serving side; the caller decides where they come from and when they rotate. */
export interface ServerTls {
  /** Serving certificate chain (leaf first). */
  cert: string | Buffer;
  key: string | Buffer;
}

export interface AgentServerOptions {
  host?: string;
  /** 15012 by default; 0 picks a free port. */
  port?: number;
  tls: ServerTls;
  store: RevisionedStore;
  registry: AgentRegistry;
  authenticator: Pick<AgentAuthenticator, 'authenticate'>;
  /** Per-source connection caps; the same limiter the authenticator uses for reviews. None when omitted. */
  limiter?: SourceLimiter;
  /** The pods informer cache, for the sign rule. */
  pods: { list(namespace?: string): readonly V1Pod[] };
  signer: WorkloadSigner;
  trustDomain: string;
  /** False until the caches have synced and the store holds their state: agents get 503 until then. */
  ready: () => boolean;
  metrics?: ControllerMetrics;
  log: Logger;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  helloTimeoutMs?: number;
  idleConnectionMs?: number;
  maxLineBytes?: number;
  maxSignBodyBytes?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: an agent uses one sync stream and a few sign requests. */
  maxConcurrentStreams?: number;
  /** An unauthenticated connection refused this many times with RATE_LIMITED is closed (ENHANCE_YOUR_CALM). */
  maxLimitedPerConnection?: number;
  /** How long a finished stream waits for the client to end its side before it is reset. */
  lingerMs?: number;
  /** How long a store commit that changed nothing for a node waits before an empty delta advances its agent. */
  catchUpMs?: number;
}

export interface AgentServer {
  listen(): Promise<AddressInfo>;
  address(): AddressInfo | null;
  /** Swaps the serving certificate for new connections (rotation). */
  setTls(tls: ServerTls): void;
  /** Open sync streams. */
  syncStreams(): number;
  /**
   * Stops accepting, ends every sync stream with SHUTTING_DOWN (agents reconnect elsewhere),
   * sends GOAWAY, and destroys what is still open after `graceMs`.
   */
  close(graceMs?: number): Promise<void>;
}

const DEFAULTS = {
  heartbeatIntervalMs: 15_000,
  heartbeatTimeoutMs: 10_000,
  helloTimeoutMs: 10_000,
  idleConnectionMs: 60_000,
  maxLineBytes: 64 * 1024,
  maxSignBodyBytes: 64 * 1024,
  maxConcurrentStreams: 64,
  maxLimitedPerConnection: 16,
  lingerMs: 2_000,
};

/** What the server knows about one connection. */
interface ConnectionState {
  /** Held while the connection has not authenticated an agent. */
  ticket: ConnectionTicket | undefined;
  authenticated: boolean;
  /** Requests refused with RATE_LIMITED so far. */
  limited: number;
}

function tlsOptions(tls: ServerTls) {
  return {
    cert: tls.cert,
    key: tls.key,
    minVersion: 'TLSv1.3' as const,
    // Agents connect with a token, not yet with a certificate: they get theirs from this server.
    requestCert: false,
  };
}

export function createAgentServer(opts: AgentServerOptions): AgentServer {
  const o = { ...DEFAULTS, ...opts };
  const log = opts.log.child({ component: 'agent-server' });
  const sessions = new Set<SyncSession>();
  const connections = new Set<ServerHttp2Session>();
  const states = new WeakMap<Http2Session, ConnectionState>();
  // Connection tickets between the TCP accept and the HTTP/2 session, by peer address and port.
  const accepted = new Map<string, ConnectionTicket>();
  const logRefusal = sampledRefusalLog(log);
  let closing = false;
  let server: Http2SecureServer | null = null;

  const onStream = async (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> => {
    const path = String(headers[h2.HTTP2_HEADER_PATH] ?? '').split('?')[0] ?? '';
    const method = headers[h2.HTTP2_HEADER_METHOD];
    const peer = peerOf(stream);
    // Before anything is awaited: a stream whose connection is reset while its token is under
    // review emits 'error', and an 'error' nobody listens to ends the process.
    stream.on('error', (err) => log.debug('agent stream error', { path, peer, error: err }));
    try {
      if (path !== SYNC_PATH && path !== SIGN_PATH) throw new AgentApiError('NOT_FOUND', `no such endpoint: ${path}`);
      if (method !== 'POST') throw new AgentApiError('METHOD_NOT_ALLOWED', `${path} takes POST`);
      if (closing) throw new AgentApiError('SHUTTING_DOWN', 'the controller is shutting down');
      if (!o.ready()) throw new AgentApiError('NOT_READY', 'the controller has not synced with the API server yet');
      const authorization = headers[h2.HTTP2_HEADER_AUTHORIZATION];
      const state = stream.session ? states.get(stream.session) : undefined;
      const source = sourceOf(stream.session?.socket?.remoteAddress);
      const agent = await o.authenticator.authenticate(typeof authorization === 'string' ? authorization : undefined, { source, trusted: state?.authenticated === true });
      if (state && !state.authenticated) {
        state.authenticated = true;
        state.ticket?.authenticated();
      }
      if (path === SYNC_PATH) startSync(stream, agent, peer);
      else await serveSign(stream, agent);
    } catch (err) {
      const e = err instanceof AgentApiError ? err : new AgentApiError('INTERNAL', 'internal error', { cause: err });
      if (e.code === 'INTERNAL') log.error('agent request failed', { path, peer, error: err });
      else logRefusal(e.code, { path, peer, reason: e.message });
      if (path === SYNC_PATH) o.metrics?.streamsRefused.inc({ code: e.code });
      if (path === SIGN_PATH) o.metrics?.signRequests.inc({ result: e.code });
      replyJson(stream, e.status, e.body(), o.lingerMs, e.headers());
      const state = stream.session ? states.get(stream.session) : undefined;
      // Trust is for rotating a token, not for trying others: a refused token ends it, and the
      // connection's next unknown tokens meet the per-source limits again.
      if (state?.authenticated && (e.code === 'UNAUTHENTICATED' || e.code === 'FORBIDDEN')) state.authenticated = false;
      if (e.code === 'RATE_LIMITED' && state && !state.authenticated && ++state.limited >= o.maxLimitedPerConnection) {
        // A connection that keeps asking after being told to wait is a flood, not an agent
        // (agents back off): answering each stream costs more than the connection is worth.
        o.metrics?.agentApiLimited.inc({ reason: 'connection_closed' });
        stream.session?.goaway(h2.NGHTTP2_ENHANCE_YOUR_CALM);
        stream.session?.destroy();
      }
    }
  };

  const startSync = (stream: ServerHttp2Stream, agent: AgentIdentity, peer: string): void => {
    const session = new SyncSession({
      stream,
      identity: agent,
      peer,
      store: o.store,
      registry: o.registry,
      ...(o.metrics ? { metrics: o.metrics } : {}),
      log,
      helloTimeoutMs: o.helloTimeoutMs,
      maxLineBytes: o.maxLineBytes,
      lingerMs: o.lingerMs,
      ...(o.catchUpMs !== undefined ? { catchUpMs: o.catchUpMs } : {}),
      onClose: (s) => sessions.delete(s),
    });
    sessions.add(session);
    session.start();
  };

  const serveSign = async (stream: ServerHttp2Stream, agent: AgentIdentity): Promise<void> => {
    const body = await readBody(stream, o.maxSignBodyBytes);
    let req;
    try {
      req = parseSignRequest(body);
    } catch (err) {
      if (err instanceof ProtocolError) throw new AgentApiError('BAD_REQUEST', err.message);
      throw err;
    }
    const res = await handleSign(req, agent, { pods: o.pods, signer: o.signer, trustDomain: o.trustDomain, log });
    o.metrics?.signRequests.inc({ result: 'signed' });
    log.info('signed a workload certificate', { node: agent.node, namespace: req.namespace, serviceAccount: req.serviceAccount, notAfter: res.notAfter });
    replyJson(stream, 200, res, o.lingerMs);
  };

  // Before the TLS handshake: a source over its cap costs the controller an accept and a close.
  const admitConnection = (socket: Socket): void => {
    if (!o.limiter) return;
    const admission = o.limiter.admitConnection(sourceOf(socket.remoteAddress));
    if (!admission.admitted) {
      o.metrics?.agentApiLimited.inc({ reason: admission.reason });
      logRefusal(`connection:${admission.reason}`, { peer: socket.remoteAddress, reason: admission.reason });
      socket.destroy();
      return;
    }
    const key = `${socket.remoteAddress}|${socket.remotePort}`;
    accepted.set(key, admission.ticket);
    socket.once('close', () => {
      admission.ticket.release();
      if (accepted.get(key) === admission.ticket) accepted.delete(key);
    });
  };

  const watchConnection = (conn: ServerHttp2Session): void => {
    connections.add(conn);
    const key = `${conn.socket?.remoteAddress}|${conn.socket?.remotePort}`;
    states.set(conn, { ticket: accepted.get(key), authenticated: false, limited: 0 });
    accepted.delete(key);
    let streams = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      idle = setTimeout(() => {
        log.debug('closing an idle agent connection', { peer: conn.socket?.remoteAddress });
        conn.close();
      }, o.idleConnectionMs);
    };
    armIdle();
    conn.on('stream', (stream: ServerHttp2Stream) => {
      streams++;
      clearTimeout(idle);
      stream.once('close', () => {
        if (--streams === 0 && !conn.closed) armIdle();
      });
    });
    const heartbeat = setInterval(() => {
      if (conn.closed || conn.destroyed) return;
      const deadline = setTimeout(() => {
        log.warn('agent connection stopped answering pings; dropping it', { peer: conn.socket?.remoteAddress, timeoutMs: o.heartbeatTimeoutMs });
        conn.destroy();
      }, o.heartbeatTimeoutMs);
      try {
        conn.ping((err) => {
          clearTimeout(deadline);
          if (err && !conn.destroyed) log.debug('ping failed', { error: err });
        });
      } catch {
        clearTimeout(deadline);
      }
    }, o.heartbeatIntervalMs);
    conn.on('error', (err) => log.debug('agent connection error', { error: err }));
    conn.once('close', () => {
      clearInterval(heartbeat);
      clearTimeout(idle);
      connections.delete(conn);
    });
  };

  return {
    async listen() {
      const s = createSecureServer({ ...tlsOptions(o.tls), allowHTTP1: false, settings: { enablePush: false, maxConcurrentStreams: o.maxConcurrentStreams } });
      s.on('connection', admitConnection);
      s.on('session', watchConnection);
      s.on('stream', (stream, headers) => {
        void onStream(stream, headers);
      });
      s.on('unknownProtocol', (socket) => socket.destroy());
      s.on('tlsClientError', (err) => log.debug('TLS handshake failed', { error: err }));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(o.port ?? CONTROLLER_PORT, o.host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      s.on('error', (err) => log.error('agent server error', { error: err }));
      server = s;
      const addr = s.address() as AddressInfo;
      log.info('agent API listening', { address: addr.address, port: addr.port });
      return addr;
    },
    address: () => (server?.address() as AddressInfo | null) ?? null,
    setTls(tls) {
      server?.setSecureContext(tlsOptions(tls));
      o.tls = tls;
    },
    syncStreams: () => sessions.size,
    async close(graceMs = 5_000) {
      closing = true;
      const s = server;
      server = null;
      if (!s) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const session of [...sessions]) session.end('SHUTTING_DOWN', 'the controller is shutting down; reconnect');
      for (const conn of connections) conn.close();
      const timer = setTimeout(() => {
        for (const conn of connections) conn.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      log.info('agent API closed');
    },
  };
}

function readBody(stream: ServerHttp2Stream, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        stream.off('data', onData);
        stream.resume(); // discard the rest
        reject(new AgentApiError('PAYLOAD_TOO_LARGE', `request body larger than ${maxBytes} bytes`));
        return;
      }
      parts.push(chunk);
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    stream.once('error', reject);
  });
}

function peerOf(stream: ServerHttp2Stream): string {
  const sock = stream.session?.socket;
  return sock?.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : 'unknown';
}
