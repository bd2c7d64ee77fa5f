// Refusals of the agent API: a code from the contract (api/agent-sync.ts) and the HTTP status it
// travels with, so that every handler throws the same thing and one place writes the answer.
import type { AgentApiErrorCode, ErrorBody } from '../../api/agent-sync.ts';
import { CodedError } from '../../api/coded-error.ts';

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
  RATE_LIMITED: 429,
  NOT_READY: 503,
  SHUTTING_DOWN: 503,
  INTERNAL: 500,
};

export class AgentApiError extends CodedError<AgentApiErrorCode> {
  override readonly name = 'AgentApiError';
  /** Sent as `retry-after` (seconds) with a refusal the caller should simply retry later. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: AgentApiErrorCode, message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(code, message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get status(): number {
    return STATUS[this.code];
  }

  /** Response headers beyond the status. */
  headers(): Record<string, string> {
    return this.retryAfterSeconds !== undefined ? { 'retry-after': String(this.retryAfterSeconds) } : {};
  }

  body(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}
