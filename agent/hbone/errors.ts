// Errors of the HBONE tunnel client, server and pool. The code says what a caller can do: retry
// elsewhere (CONNECT_FAILED, STREAM_REFUSED), give up on the destination (PEER_IDENTITY_MISMATCH),
// or report the server's answer (TUNNEL_REJECTED, with the HTTP status).

export type HboneErrorCode =
  | 'NO_CERTIFICATE' // no certificate for the local identity (not issued yet, or expired)
  | 'CONNECT_FAILED' // TCP or TLS to <pod IP>:15008 failed
  | 'CONNECT_TIMEOUT' // connecting or opening the stream took too long
  | 'ALPN_MISMATCH' // the server did not select h2
  | 'PEER_IDENTITY_MISMATCH' // the server's SPIFFE ID is not the destination's identity
  | 'PEER_IDENTITY_INVALID' // the peer's certificate carries no valid SPIFFE ID
  | 'TUNNEL_REJECTED' // the server answered the CONNECT with a non-200 status
  | 'STREAM_REFUSED' // the connection went away or refused the stream before it was answered
  | 'ABORTED' // the caller's signal aborted the attempt
  | 'POOL_CLOSED'; // the pool is closed

export class HboneError extends Error {
  readonly code: HboneErrorCode;
  /** The HTTP status of a TUNNEL_REJECTED answer. */
  readonly status: number | undefined;

  constructor(code: HboneErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options);
    this.name = 'HboneError';
    this.code = code;
    this.status = options?.status;
  }
}
