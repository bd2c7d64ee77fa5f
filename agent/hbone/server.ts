// The HBONE server: inbound mTLS tunnels on 15008.
//
// The inbound listener accepts TCP and hands each socket over together with the connection's
// original destination, the pod IP the client dialled. That address selects the certificate to
// present (HBONE sends no SNI) and is the only address streams on the connection may target: the
// client verified that pod's identity, not any other.
//
// TLS is terminated by a tls.Server that never listens; sockets are fed to it with
// emit('connection'). A bare `new tls.TLSSocket({ isServer: true })` would be lighter, but Node
// checks the client's chain only inside tls.Server (a standalone server socket accepts any client
// certificate and never reports `authorized`), and chain verification is not something to
// re-implement. There is one tls.Server per (certificate, destination IP): the certificate because
// a tls.Server presents one, the IP because its 'secureConnection' event is the first place the
// TLS socket is seen and must know which destination it serves. They live in a WeakMap keyed by the
// certificate, so renewal drops them. The verified socket then goes to one plain HTTP/2 server.
//
// Per stream: only CONNECT (else 405), `:authority` = the original destination IP and a port
// (else 400); the injected handler decides (policy) and connects; 200 and splice on success, 503
// when the destination cannot be reached, 401/403 when the handler denies.
//
// Hostile peers (each path is exercised in hostile.test.ts and server.fuzz.test.ts): nghttp2
// resets streams whose headers break HTTP/2's rules (missing or repeated pseudo-headers, `:path`
// on a CONNECT, upper-case or connection-specific fields, more than SERVER_MAX_HEADER_FIELDS or
// SERVER_MAX_HEADER_LIST_SIZE) before they reach us, drops fields whose values hold NUL, CR or LF
// (RFC 9113 8.2.1; so they reach neither policy nor logs), and sends GOAWAY to floods of resets.
// A connection must open its first stream within the handshake timeout and is closed after
// sessionIdleTimeoutMs without streams, so an authenticated peer cannot park idle connections.
// A stream that goes away before its answer is "abandoned": counted, not reported as a refusal,
// so a flood of opened-and-reset streams cannot flood the access log either.

import http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { peerSpiffeId } from '../identity/peer.ts';
import { canonicalIp, parseAuthority, type SocketAddress } from './authority.ts';
import {
  HBONE_ALPN,
  MAX_SESSION_MEMORY_MB,
  SERVER_MAX_CONCURRENT_STREAMS,
  SERVER_MAX_HEADER_FIELDS,
  SERVER_MAX_HEADER_LIST_SIZE,
  WINDOW_SIZE,
  localSettings,
} from './settings.ts';
import { resetStream, splice, type SpliceResult } from './splice.ts';

const { NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** How long a session that starts while the server drains is served before its GOAWAY. */
const LATE_SESSION_GOAWAY_MS = 1000;

/** How long a GOAWAY'd idle session may take to close before it is destroyed. */
const IDLE_CLOSE_GRACE_MS = 1000;

/**
 * Connections held at once waiting for their certificate (see certificateWaitMs); past this they
 * are refused at once, so that a peer dialling a pod whose certificate never comes cannot make
 * the server hold sockets without bound.
 */
const MAX_CONNECTIONS_AWAITING_CERTIFICATE = 1024;

export type InboundRequest = {
  /** The client's SPIFFE ID, from its verified certificate. */
  peerIdentity: string;
  /** The identity this server presented: the destination workload's. */
  localIdentity: string;
  /** Where to connect: `:authority`, whose IP is the connection's original destination. */
  target: SocketAddress;
  /** The far end of the tunnel connection (the source node). */
  peerAddress: SocketAddress;
  /** Request headers, e.g. `baggage` or `traceparent` from an Istio peer. */
  headers: http2.IncomingHttpHeaders;
  /** Aborted if the stream goes away before the handler answers. */
  signal: AbortSignal;
};

export type InboundDecision =
  | { action: 'connect'; socket: net.Socket }
  /** Answer 200 and hand the stream to `serve` (the L7 path terminates HTTP inside the tunnel). */
  | { action: 'serve'; serve: (stream: http2.ServerHttp2Stream) => Promise<void> }
  /** `reported`: the handler already logged the refusal (with the policy that decided it). */
  | { action: 'deny'; status: 401 | 403; reason: string; reported?: boolean }
  | { action: 'unreachable'; reason: string };

/** Decides on a stream (policy) and, if allowed, connects to the target (see connectTarget). */
export type InboundHandler = (request: InboundRequest) => Promise<InboundDecision>;

export type HboneServerEvent =
  | { type: 'connection-refused'; reason: string; peerAddress?: SocketAddress; originalDestination: string }
  | { type: 'stream-rejected'; status: number; reason: string; peerIdentity: string; authority: string | undefined; reported: boolean }
  | { type: 'stream-closed'; peerIdentity: string; target: SocketAddress; result: SpliceResult }
  /** The handler or the stream's L7 server failed unexpectedly; the stream was reset. */
  | { type: 'stream-failed'; peerIdentity: string; reason: string };

export type HboneServerOptions = {
  /** The certificate of the workload at a pod IP, or undefined if this node serves no such pod. */
  certificateFor: (originalDestinationIp: string) => WorkloadCertificate | undefined;
  /**
   * For a pod IP that has no certificate yet: its certificate once issued, or undefined when none
   * is coming (this node serves no such pod). A cold-started agent serves its pods a moment before
   * their certificates arrive; tunnels opened in that moment wait (certificateWaitMs) instead of
   * being refused. Without it, such connections are refused at once.
   */
  certificateArrival?: (originalDestinationIp: string, signal: AbortSignal) => Promise<WorkloadCertificate | undefined> | undefined;
  /** How long a connection waits for its certificate to arrive. Default 2 s. */
  certificateWaitMs?: number;
  handler: InboundHandler;
  /** Reset a tunnelled stream after this long without data. Default 1 h; 0 disables. */
  streamIdleTimeoutMs?: number;
  /**
   * Drop a connection whose TLS handshake has not completed after this long, or that has not
   * opened its first stream this long after it. Default 10 s.
   */
  handshakeTimeoutMs?: number;
  /**
   * GOAWAY on a connection that has carried no stream for this long. Default 5 min: longer than a
   * Weft pool keeps an idle connection (60 s), so honest clients close first. 0 disables.
   */
  sessionIdleTimeoutMs?: number;
  onEvent?: (event: HboneServerEvent) => void;
};

export type HboneServerStats = {
  connectionsAccepted: number;
  connectionsRefused: number;
  connectionsOpen: number;
  streamsAccepted: number;
  streamsRejected: number;
  /** Streams the peer reset or abandoned before they were answered. */
  streamsAbandoned: number;
  streamsOpen: number;
  /** Connections closed for carrying no stream (see sessionIdleTimeoutMs). */
  connectionsIdleClosed: number;
};

type Connection = {
  peerIdentity: string;
  localIdentity: string;
  destinationIp: string;
  peerAddress: SocketAddress;
  /** Streams the HTTP/2 server has handed us and not yet closed. */
  streams: number;
  /** When the first of the two certificates of the handshake (ours, the peer's) expires. */
  notAfterMs: number;
  idleTimer?: NodeJS.Timeout;
};

export class HboneServer {
  readonly #options: HboneServerOptions;
  readonly #streamIdleTimeoutMs: number;
  readonly #handshakeTimeoutMs: number;
  readonly #sessionIdleTimeoutMs: number;
  readonly #certificateWaitMs: number;
  /** Connections waiting for their certificate. */
  #awaitingCertificate = 0;
  readonly #emit: (event: HboneServerEvent) => void;
  readonly #h2: http2.Http2Server;
  /** TLS terminators, dropped with the certificate they present when it is renewed. */
  readonly #tlsServers = new WeakMap<WorkloadCertificate, Map<string, tls.Server>>();
  readonly #sessions = new Map<http2.ServerHttp2Session, Connection>();
  readonly #sessionsClosed = new Set<() => void>();
  /** The connection being handed to the HTTP/2 server; its 'session' event fires synchronously. */
  #handover: Connection | undefined;
  #draining = false;
  #closing = false;
  readonly #stats: HboneServerStats = {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectionsOpen: 0,
    streamsAccepted: 0,
    streamsRejected: 0,
    streamsAbandoned: 0,
    streamsOpen: 0,
    connectionsIdleClosed: 0,
  };

  constructor(options: HboneServerOptions) {
    this.#options = options;
    this.#streamIdleTimeoutMs = options.streamIdleTimeoutMs ?? 60 * 60 * 1000;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.#sessionIdleTimeoutMs = options.sessionIdleTimeoutMs ?? 5 * 60 * 1000;
    this.#certificateWaitMs = options.certificateWaitMs ?? 2000;
    const onEvent = options.onEvent ?? (() => {});
    // A throwing observer must not take a stream (or the process) down with it.
    this.#emit = (event) => {
      try {
        onEvent(event);
      } catch {
        // The observer's problem; the stream's fate is already decided.
      }
    };
    this.#h2 = http2.createServer({
      settings: { ...localSettings, maxConcurrentStreams: SERVER_MAX_CONCURRENT_STREAMS, maxHeaderListSize: SERVER_MAX_HEADER_LIST_SIZE },
      maxHeaderListPairs: SERVER_MAX_HEADER_FIELDS,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    this.#h2.on('session', (session) => this.#onSession(session));
    this.#h2.on('stream', (stream, headers) => this.#onStream(stream, headers));
  }

  /**
   * Takes over an accepted TCP connection whose original destination was `originalDestination`
   * (the pod IP and 15008).
   */
  handleConnection(socket: net.Socket, originalDestination: SocketAddress): void {
    const destinationIp = canonicalIp(originalDestination.ip);
    if (this.#closing) return this.#refuse(socket, 'SERVER_CLOSING', destinationIp, addressOf(socket));
    const certificate = this.#options.certificateFor(destinationIp);
    if (certificate) return this.#terminate(socket, certificate, destinationIp);
    if (this.#awaitingCertificate >= MAX_CONNECTIONS_AWAITING_CERTIFICATE) return this.#refuse(socket, 'NO_CERTIFICATE', destinationIp, addressOf(socket));
    const gone = new AbortController();
    const arrival = this.#options.certificateArrival?.(destinationIp, gone.signal);
    if (!arrival) return this.#refuse(socket, 'NO_CERTIFICATE', destinationIp, addressOf(socket));
    // The client's hello waits in the socket meanwhile; its handshake timeout is the client's.
    this.#awaitingCertificate += 1;
    const onClose = (): void => gone.abort();
    socket.once('close', onClose);
    const timer = setTimeout(() => gone.abort(), this.#certificateWaitMs);
    const settle = (arrived: WorkloadCertificate | undefined): void => {
      this.#awaitingCertificate -= 1;
      clearTimeout(timer);
      socket.off('close', onClose);
      if (socket.destroyed) return;
      if (this.#closing) return this.#refuse(socket, 'SERVER_CLOSING', destinationIp, addressOf(socket));
      if (!arrived) return this.#refuse(socket, 'NO_CERTIFICATE', destinationIp, addressOf(socket));
      this.#terminate(socket, arrived, destinationIp);
    };
    arrival.then(settle, () => settle(undefined));
  }

  /** Connections waiting for their certificate to arrive (certificateArrival). */
  get awaitingCertificate(): number {
    return this.#awaitingCertificate;
  }

  #terminate(socket: net.Socket, certificate: WorkloadCertificate, destinationIp: string): void {
    socket.setNoDelay(true);
    this.#tlsServerFor(certificate, destinationIp).emit('connection', socket);
  }

  stats(): HboneServerStats {
    return { ...this.#stats };
  }

  /**
   * Handover to another agent process (the listener has stopped accepting): GOAWAY on every
   * session, so that peers open their next tunnels elsewhere, while the streams already open run
   * to their end. A connection that completes its handshake after this (accepted just before the
   * listener closed) is served briefly, then gets its GOAWAY too: refusing it outright would fail
   * the stream its peer is about to send. Resolves once every session has closed; the caller owns
   * the deadline (then close()).
   */
  drain(): Promise<void> {
    this.#draining = true;
    for (const session of this.#sessions.keys()) session.close();
    return this.#allSessionsClosed();
  }

  /**
   * Graceful close: refuse new connections, send GOAWAY so that clients open no new streams here,
   * let open streams finish for up to `graceMs`, then reset whatever is left.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    this.#closing = true;
    const graceMs = options.graceMs ?? 5000;
    const allClosed = this.#allSessionsClosed();
    for (const session of this.#sessions.keys()) session.close();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([allClosed, deadline]);
    clearTimeout(timer);
    for (const session of this.#sessions.keys()) session.destroy();
    await allClosed;
  }

  #allSessionsClosed(): Promise<void> {
    return new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.#sessions.size > 0) return;
        this.#sessionsClosed.delete(check);
        resolve();
      };
      this.#sessionsClosed.add(check);
      check();
    });
  }

  #tlsServerFor(certificate: WorkloadCertificate, destinationIp: string): tls.Server {
    let byDestination = this.#tlsServers.get(certificate);
    if (!byDestination) this.#tlsServers.set(certificate, (byDestination = new Map<string, tls.Server>()));
    let server = byDestination.get(destinationIp);
    if (server) return server;
    server = tls.createServer({
      ...certificate.tlsCredentials(),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [HBONE_ALPN],
      handshakeTimeout: this.#handshakeTimeoutMs,
    });
    const localIdentity = certificate.identity;
    const localNotAfterMs = certificate.notAfter.getTime();
    server.on('secureConnection', (socket: tls.TLSSocket) => this.#onSecureConnection(socket, localIdentity, localNotAfterMs, destinationIp));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      // authorizationError says why the client's chain was refused; otherwise the handshake failed.
      const reason = socket.authorizationError ? String(socket.authorizationError) : (err.code ?? err.message);
      this.#refuse(socket, reason, destinationIp, addressOf(socket));
    });
    byDestination.set(destinationIp, server);
    return server;
  }

  #onSecureConnection(socket: tls.TLSSocket, localIdentity: string, localNotAfterMs: number, destinationIp: string): void {
    const peerAddress = addressOf(socket);
    if (this.#closing) return this.#refuse(socket, 'SERVER_CLOSING', destinationIp, peerAddress);
    if (socket.alpnProtocol !== HBONE_ALPN) return this.#refuse(socket, 'ALPN_MISMATCH', destinationIp, peerAddress);
    let peerIdentity: string;
    try {
      peerIdentity = peerSpiffeId(socket);
    } catch {
      return this.#refuse(socket, 'PEER_IDENTITY_INVALID', destinationIp, peerAddress);
    }
    // The handshake checked the peer's validity; a long-lived session must not outlive it.
    const peerNotAfterMs = Date.parse(socket.getPeerX509Certificate()?.validTo ?? '');
    const notAfterMs = Math.min(localNotAfterMs, Number.isNaN(peerNotAfterMs) ? 0 : peerNotAfterMs);
    this.#handover = { peerIdentity, localIdentity, destinationIp, peerAddress: peerAddress ?? { ip: '', port: 0 }, streams: 0, notAfterMs };
    try {
      this.#h2.emit('connection', socket);
    } finally {
      this.#handover = undefined;
    }
  }

  #onSession(session: http2.ServerHttp2Session): void {
    const connection = this.#handover;
    if (!connection) {
      session.destroy();
      return;
    }
    this.#sessions.set(session, connection);
    this.#stats.connectionsAccepted += 1;
    this.#stats.connectionsOpen += 1;
    session.setLocalWindowSize(WINDOW_SIZE);
    session.on('error', () => {
      // The session closes; streams are reset and their splices clean up.
    });
    const lateGoaway = this.#draining ? setTimeout(() => session.close(), LATE_SESSION_GOAWAY_MS) : undefined;
    // The first stream is due right after the handshake (a pool connects for a stream).
    this.#armIdle(session, connection, this.#handshakeTimeoutMs);
    session.once('close', () => {
      clearTimeout(lateGoaway);
      clearTimeout(connection.idleTimer);
      this.#sessions.delete(session);
      this.#stats.connectionsOpen -= 1;
      for (const check of this.#sessionsClosed) check();
    });
  }

  /** GOAWAY once the session has carried no stream for `ms`. */
  #armIdle(session: http2.ServerHttp2Session, connection: Connection, ms: number): void {
    clearTimeout(connection.idleTimer);
    connection.idleTimer = undefined;
    if (ms <= 0) return;
    connection.idleTimer = setTimeout(() => {
      if (connection.streams > 0 || session.closed || session.destroyed) return;
      this.#stats.connectionsIdleClosed += 1;
      session.close();
      // A peer that does not read may never let the GOAWAY out.
      setTimeout(() => session.destroy(), IDLE_CLOSE_GRACE_MS).unref();
    }, ms);
    connection.idleTimer.unref();
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const session = stream.session as http2.ServerHttp2Session | undefined;
    const connection = session && this.#sessions.get(session);
    if (!session || !connection) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    // Errors are reported through the stream's close and the splice result.
    stream.on('error', ignore);
    connection.streams += 1;
    clearTimeout(connection.idleTimer);
    stream.once('close', () => {
      connection.streams -= 1;
      if (connection.streams === 0) this.#armIdle(session, connection, this.#sessionIdleTimeoutMs);
    });
    if (headers[':method'] !== 'CONNECT') return this.#reject(stream, connection, 405, 'only CONNECT is accepted', headers);
    if (Date.now() >= connection.notAfterMs) {
      // Fail closed: a session set up before a certificate expired carries no new tunnel (the
      // client's pool then needs a new handshake, which needs valid certificates on both sides).
      // The open streams go on; GOAWAY tells the client to stop using the session.
      this.#reject(stream, connection, 503, 'a certificate of this connection has expired', headers);
      session.close();
      return;
    }
    const target = parseAuthority(headers[':authority']);
    if (!target) return this.#reject(stream, connection, 400, ':authority must be <ip>:<port>', headers);
    if (target.ip !== connection.destinationIp) {
      return this.#reject(stream, connection, 400, `target ${target.ip} is not the connection's destination`, headers);
    }
    this.#dispatch(stream, connection, target, headers).catch((err: unknown) => {
      // A bug in a handler or an L7 server: this stream ends, the connection and the process stay.
      this.#emit({ type: 'stream-failed', peerIdentity: connection.peerIdentity, reason: err instanceof Error ? err.message : String(err) });
      resetStream(stream);
    });
  }

  async #dispatch(stream: http2.ServerHttp2Stream, connection: Connection, target: SocketAddress, headers: http2.IncomingHttpHeaders): Promise<void> {
    const gone = new AbortController();
    const onGone = (): void => gone.abort();
    stream.once('close', onGone);
    let decision: InboundDecision;
    try {
      decision = await this.#options.handler({
        peerIdentity: connection.peerIdentity,
        localIdentity: connection.localIdentity,
        target,
        peerAddress: connection.peerAddress,
        headers,
        signal: gone.signal,
      });
    } catch (err) {
      decision = { action: 'unreachable', reason: `handler failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    stream.off('close', onGone);

    if (decision.action === 'deny' || decision.action === 'unreachable') {
      const status = decision.action === 'deny' ? decision.status : 503;
      return this.#reject(stream, connection, status, decision.reason, headers, decision.action === 'deny' && decision.reported === true);
    }
    if (decision.action === 'serve') {
      if (stream.closed || stream.destroyed) {
        this.#stats.streamsAbandoned += 1;
        return;
      }
      stream.respond({ ':status': 200 });
      this.#stats.streamsAccepted += 1;
      this.#stats.streamsOpen += 1;
      try {
        await decision.serve(stream);
      } finally {
        this.#stats.streamsOpen -= 1;
      }
      return;
    }
    const { socket } = decision;
    if (stream.closed || stream.destroyed) {
      this.#stats.streamsAbandoned += 1;
      socket.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    this.#stats.streamsAccepted += 1;
    this.#stats.streamsOpen += 1;
    return this.#splice(stream, socket, connection.peerIdentity, target);
  }

  /**
   * A method of its own, not a closure in #dispatch: V8 keeps one context per function for every
   * variable any of its closures uses, so a callback there would keep the request's AbortController
   * alive for as long as the tunnel lasts. Returned, not awaited, for the same reason.
   */
  #splice(stream: http2.ServerHttp2Stream, socket: net.Socket, peerIdentity: string, target: SocketAddress): Promise<void> {
    return splice(stream, socket, { idleTimeoutMs: this.#streamIdleTimeoutMs }).then((result) => {
      this.#stats.streamsOpen -= 1;
      this.#emit({ type: 'stream-closed', peerIdentity, target, result });
    });
  }

  #reject(stream: http2.ServerHttp2Stream, connection: Connection, status: number, reason: string, headers: http2.IncomingHttpHeaders, reported = false): void {
    if (stream.closed || stream.destroyed) {
      // Nobody to answer: the peer reset the stream while the handler decided.
      this.#stats.streamsAbandoned += 1;
      return;
    }
    this.#stats.streamsRejected += 1;
    const authority = headers[':authority'];
    this.#emit({ type: 'stream-rejected', status, reason, peerIdentity: connection.peerIdentity, authority, reported });
    stream.respond({ ':status': status }, { endStream: true });
    // RST_STREAM(NO_ERROR) after the response (RFC 9113 8.1) tells the client to stop sending;
    // Node sends it once the response has been written.
    stream.close(NGHTTP2_NO_ERROR);
  }

  #refuse(socket: net.Socket, reason: string, originalDestination: string, peerAddress: SocketAddress | undefined): void {
    this.#stats.connectionsRefused += 1;
    this.#emit({ type: 'connection-refused', reason, peerAddress, originalDestination });
    socket.destroy();
  }
}

function ignore(): void {}

function addressOf(socket: net.Socket): SocketAddress | undefined {
  const { remoteAddress, remotePort } = socket;
  return remoteAddress === undefined || remotePort === undefined ? undefined : { ip: canonicalIp(remoteAddress), port: remotePort };
}
