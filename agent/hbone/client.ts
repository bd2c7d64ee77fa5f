// One HBONE client connection: TLS 1.3 to <destination pod IP>:15008 presenting the source
// workload's certificate, HTTP/2 over it, and CONNECT streams to <destination pod IP>:<port>.
//
// The server is authenticated by identity, not by name: its chain must verify against the trust
// bundle (Node does that) and its one SPIFFE URI SAN must equal the destination workload's
// identity (checkServerIdentity, which replaces the hostname check). No SNI is sent: the host is
// an IP literal, and TLS forbids IP literals in SNI.

import { once } from 'node:events';
import http2 from 'node:http2';
import tls from 'node:tls';
import { spiffeIdOfCertificate } from '../identity/peer.ts';
import { formatAuthority, type SocketAddress } from './authority.ts';
import { HboneError } from './errors.ts';
import { HBONE_ALPN, MAX_SESSION_MEMORY_MB, WINDOW_SIZE, localSettings } from './settings.ts';
import { resetStream } from './splice.ts';

export type HboneConnectOptions = {
  /** The destination's HBONE address: its pod IP and 15008. */
  address: SocketAddress;
  /** The source workload's certificate and trust bundle (CertificateManager.secureContextFor). */
  secureContext: tls.SecureContext;
  /** The SPIFFE ID the server must present. */
  expectedIdentity: string;
  /** TCP + TLS must complete within this. Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
};

export type OpenStreamOptions = {
  /** Extra request headers (e.g. `traceparent`, `baggage`). */
  headers?: http2.OutgoingHttpHeaders;
  /** The server must answer the CONNECT within this. Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
};

export class HboneConnection {
  readonly session: http2.ClientHttp2Session;
  readonly address: SocketAddress;
  /** The server's verified SPIFFE ID. */
  readonly peerIdentity: string;
  /**
   * Why the connection failed, when it did. With TLS 1.3 a server that rejects the client's
   * certificate says so in an alert after the client's handshake has completed: without this the
   * only trace would be a stream closed before its answer, which points nowhere near trust.
   */
  failure: string | undefined;
  /** Whether the server's HTTP/2 SETTINGS arrived: a server that refuses us after TLS never sends them. */
  greeted = false;

  private constructor(session: http2.ClientHttp2Session, address: SocketAddress, peerIdentity: string) {
    this.session = session;
    this.address = address;
    this.peerIdentity = peerIdentity;
  }

  static async connect(options: HboneConnectOptions): Promise<HboneConnection> {
    const { address, secureContext, expectedIdentity } = options;
    const signals = [AbortSignal.timeout(options.timeoutMs ?? 10_000)];
    if (options.signal) signals.push(options.signal);
    const signal = AbortSignal.any(signals);

    const socket = tls.connect({
      host: address.ip,
      port: address.port,
      secureContext,
      ALPNProtocols: [HBONE_ALPN],
      checkServerIdentity: (_host, certificate) => checkPeerIdentity(certificate.raw, expectedIdentity),
    });
    // Before the handshake too: Nagle would hold the client's Finished behind the server's ACK.
    socket.setNoDelay(true);
    try {
      await once(socket, 'secureConnect', { signal });
    } catch (err) {
      socket.destroy();
      throw connectError(err, address);
    }
    if (socket.alpnProtocol !== HBONE_ALPN) {
      socket.destroy();
      throw new HboneError('ALPN_MISMATCH', `${formatAuthority(address)} did not select ALPN h2`);
    }

    const session = http2.connect(`https://${formatAuthority(address)}`, {
      createConnection: () => socket,
      settings: localSettings,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    const connection = new HboneConnection(session, address, expectedIdentity);
    // The session closes with its socket; the pool evicts it on 'close', streams see resets. The
    // first error is kept for the messages of the streams it ends.
    const failed = (err: Error): void => {
      connection.failure ??= (err as NodeJS.ErrnoException).code ? `${(err as NodeJS.ErrnoException).code}: ${err.message}` : err.message;
    };
    socket.on('error', failed);
    session.on('error', failed);
    session.once('remoteSettings', () => (connection.greeted = true));
    session.setLocalWindowSize(WINDOW_SIZE);
    return connection;
  }

  /** The most streams the server lets this connection carry at once. */
  get maxConcurrentStreams(): number {
    return this.session.remoteSettings.maxConcurrentStreams ?? Number.MAX_SAFE_INTEGER;
  }

  /** True while new streams may be opened (not closing, no GOAWAY received). */
  get usable(): boolean {
    return !this.session.closed && !this.session.destroyed;
  }

  /**
   * Opens a tunnel to `target` and resolves once the server has answered 200. The stream is a
   * Duplex carrying the TCP payload; END_STREAM is the FIN and RST_STREAM the reset (see splice).
   */
  openStream(target: SocketAddress, options: OpenStreamOptions = {}): Promise<http2.ClientHttp2Stream> {
    const authority = formatAuthority(target);
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.session.request({ ':method': 'CONNECT', ':authority': authority, ...options.headers }, { endStream: false });
    } catch (err) {
      // The session is closing (GOAWAY received, or closed locally): nothing was sent.
      return Promise.reject(new HboneError('STREAM_REFUSED', `connection to ${this.peerIdentity} no longer takes streams`, { cause: err }));
    }
    // A reset of an established tunnel is reported by 'close' and rstCode. Without a listener, the
    // error event a reset raises would crash the agent.
    stream.on('error', ignore);
    return new Promise((resolve, reject) => {
      const fail = (err: HboneError): void => {
        cleanup();
        // Reset, not close: if the server did connect, its destination must not see a FIN.
        resetStream(stream);
        reject(err);
      };
      const onResponse = (headers: http2.IncomingHttpHeaders): void => {
        const status = Number(headers[':status']);
        if (status === 200) {
          cleanup();
          resolve(stream);
        } else {
          fail(new HboneError('TUNNEL_REJECTED', `${this.peerIdentity} answered CONNECT ${authority} with ${status}`, { status }));
        }
      };
      // A session torn down by an error closes its streams first and emits the error after: look
      // for it once the current callbacks have run.
      const onClose = (): void =>
        void setImmediate(() => {
          const why = this.failure
            ? `; the connection failed: ${this.failure}`
            : this.greeted
              ? ''
              : '; the server closed the connection without an HTTP/2 greeting: it refused the TLS session after the handshake (an untrusted client certificate looks like this; its logs say why)';
          fail(new HboneError('STREAM_REFUSED', `CONNECT ${authority} closed before an answer (RST code ${stream.rstCode}${why})`));
        });
      const onTimeout = (): void => fail(new HboneError('CONNECT_TIMEOUT', `no answer to CONNECT ${authority}`));
      const onAbort = (): void => fail(new HboneError('ABORTED', `CONNECT ${authority} aborted`));
      const timer = setTimeout(onTimeout, options.timeoutMs ?? 10_000);
      const cleanup = (): void => {
        clearTimeout(timer);
        stream.off('response', onResponse);
        stream.off('close', onClose);
        options.signal?.removeEventListener('abort', onAbort);
      };
      stream.once('response', onResponse);
      stream.once('close', onClose);
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Graceful: no new streams, open ones finish. */
  close(): void {
    this.session.close();
  }

  destroy(): void {
    this.session.destroy();
  }
}

function ignore(): void {}

function checkPeerIdentity(der: Buffer, expected: string): Error | undefined {
  let actual: string;
  try {
    actual = spiffeIdOfCertificate(der);
  } catch (err) {
    return new HboneError('PEER_IDENTITY_INVALID', `server certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (actual === expected) return undefined;
  return new HboneError('PEER_IDENTITY_MISMATCH', `server is ${actual}, expected ${expected}`);
}

function connectError(err: unknown, address: SocketAddress): HboneError {
  if (err instanceof HboneError) return err;
  const where = formatAuthority(address);
  if (err instanceof Error && err.name === 'AbortError' && err.cause instanceof Error && err.cause.name === 'TimeoutError') {
    return new HboneError('CONNECT_TIMEOUT', `connecting to ${where} timed out`, { cause: err });
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return new HboneError('CONNECT_FAILED', `connecting to ${where} failed${code ? ` (${code})` : ''}`, { cause: err });
}
