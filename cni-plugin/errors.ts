// CNI error results (spec, section 5 "Error"): the plugin prints one of these on stdout and exits
// non-zero. Codes below 100 are the spec's own; 100 and above are weft-cni's.

export const CNI_ERROR = {
  INCOMPATIBLE_VERSION: 1,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS only: the plugin cannot service ADD requests. */
  PLUGIN_NOT_AVAILABLE: 50,
  /** The agent refused the request as malformed: plugin and agent disagree on the contract. */
  AGENT_REJECTED: 100,
  /** The agent tried and failed (e.g. it could not program the pod's redirection). */
  AGENT_FAILED: 101,
  /** CHECK: the pod should be enrolled but its redirection is not in place. */
  NOT_ENROLLED: 102,
  /** The agent answered something that is not the contract. */
  AGENT_PROTOCOL: 103,
  /** A bug in weft-cni itself; the log file has the stack. */
  INTERNAL: 104,
} as const;

export type CniErrorCode = (typeof CNI_ERROR)[keyof typeof CNI_ERROR];

/** The spec's short messages for its codes; ours are in the same spirit. */
const MESSAGES: Record<CniErrorCode, string> = {
  1: 'Incompatible CNI version',
  4: 'Invalid necessary environment variables',
  5: 'I/O failure',
  6: 'Failed to decode content',
  7: 'Invalid network config',
  11: 'Try again later',
  50: 'Plugin not available',
  100: 'Request rejected by the weft agent',
  101: 'The weft agent failed to handle the pod',
  102: 'Pod redirection is not in place',
  103: 'Unexpected answer from the weft agent',
  104: 'Internal error in weft-cni',
};

/** A failure the runtime should see as a CNI error result; `details` is for a person. */
export class CniError extends Error {
  readonly code: CniErrorCode;
  readonly details: string;
  constructor(code: CniErrorCode, details: string) {
    super(`${MESSAGES[code]}: ${details}`);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

export function errorResult(err: CniError, cniVersion: string): CniErrorResult {
  return { cniVersion, code: err.code, msg: MESSAGES[err.code], details: err.details };
}
