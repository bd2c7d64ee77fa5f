// Errors of the agent's identity layer, each with a code a caller can act on.

export type IdentityErrorCode =
  | 'SPIFFE_ID_INVALID' // a string is not a Weft SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>)
  | 'PEER_IDENTITY_INVALID' // a peer certificate does not carry exactly one valid SPIFFE URI SAN
  | 'CERTIFICATE_INVALID' // an issued certificate does not match its key, identity or trust bundle
  | 'IDENTITY_REMOVED' // the identity was dropped while someone waited for its certificate
  | 'MANAGER_CLOSED'; // the certificate manager was closed

export class IdentityError extends Error {
  readonly code: IdentityErrorCode;

  constructor(code: IdentityErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdentityError';
    this.code = code;
  }
}
