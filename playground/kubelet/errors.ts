// Errors the kubelet raises carry a code a caller can act on (retry, report as a reason, give up),
// instead of a message to parse.

export type KubeletErrorCode =
  | 'CONFIG_INVALID'
  | 'NETNS_FAILED'
  | 'CNI_CONFIG_MISSING'
  | 'CNI_CONFIG_INVALID'
  | 'CNI_PLUGIN_NOT_FOUND'
  | 'CNI_PLUGIN_FAILED'
  | 'CNI_PLUGIN_TIMEOUT'
  | 'CNI_RESULT_INVALID'
  | 'CONTAINER_CONFIG'
  | 'STATE_CORRUPT'
  | 'API_FAILED';

export class KubeletError extends Error {
  readonly code: KubeletErrorCode;

  constructor(code: KubeletErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KubeletError';
    this.code = code;
  }
}

export { errorMessage } from '../../api/log.ts';
export { apiErrorSummary, httpStatus } from '../../api/kube-errors.ts';
