// Errors the mesh CA raises. Each carries a code a caller can act on: the agent API maps
// CSR_INVALID / KEY_UNSUPPORTED / IDENTITY_INVALID to "bad request", ROOT_INVALID and
// CONFIG_INVALID are operator errors that stop the controller from serving certificates.

export type CaErrorCode =
  | 'CSR_INVALID' // not a PKCS#10 request, or its self-signature does not verify
  | 'KEY_UNSUPPORTED' // the requested key is not an EC P-256 public key
  | 'IDENTITY_INVALID' // the namespace / service account cannot form a SPIFFE ID
  | 'ROOT_INVALID' // the configured root certificate or key is unusable
  | 'CONFIG_INVALID'; // an option is out of range

export class CaError extends Error {
  readonly code: CaErrorCode;

  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CaError';
    this.code = code;
  }
}
