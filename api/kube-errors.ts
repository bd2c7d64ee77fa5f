// How Kubernetes API failures are described in logs and reasons: the status and the server's
// message, never the whole ApiException text (it embeds every response header).
import { errorMessage } from './log.ts';

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
