// Refusals of the agent API: a code from the contract (api/agent-sync.ts) and the HTTP status it
// travels with, so that every handler throws the same thing and one place writes the answer.
import type { AgentApiErrorCode, ErrorBody } from '../../api/agent-sync.ts';

const STATUS: Record<AgentApiErrorCode, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NODE_MISMATCH: 403,
  NOT_AUTHORIZED_FOR_IDENTITY: 403,
  BAD_REQUEST: 400,
  PROTOCOL_ERROR: 400,
  CSR_INVALID: 400,
  KEY_UNSUPPORTED: 400,
  IDENTITY_INVALID: 400,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  NOT_READY: 503,
  SHUTTING_DOWN: 503,
  INTERNAL: 500,
};

export class AgentApiError extends Error {
  readonly code: AgentApiErrorCode;
  override readonly name = 'AgentApiError';

  constructor(code: AgentApiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  get status(): number {
    return STATUS[this.code];
  }

  body(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}
