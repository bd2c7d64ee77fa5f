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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The HTTP status of a failed API call, if it got that far. @kubernetes/client-node v2 throws an
 * ApiException whose `code` is the status; the watch throws errors with `statusCode`.
 */
export function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** A short, single-line description of an API failure (the ApiException message embeds headers). */
export function apiErrorSummary(err: unknown): string {
  const status = httpStatus(err);
  if (status === undefined) return errorMessage(err);
  const body = (err as { body?: unknown }).body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = body.slice(0, 200);
    }
  } else if (typeof body === 'object' && body !== null) {
    message = (body as { message?: string }).message;
  }
  return `HTTP ${status}${message ? `: ${message}` : ''}`;
}
