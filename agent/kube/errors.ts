// The one error type of the agent's small Kubernetes API client. `status` carries the HTTP status
// when the API server answered, so that a caller can tell "forbidden" (401/403) from "gone" (410).
import { CodedError } from '../../api/coded-error.ts';

export type KubeErrorCode =
  /** No API server to ask (KUBERNETES_SERVICE_HOST is not set). */
  | 'KUBE_CONFIG'
  /** The token or the CA bundle could not be read. */
  | 'KUBE_CREDENTIALS'
  /** No connection, or it broke. */
  | 'KUBE_UNREACHABLE'
  /** No answer, or no end of a watch, in time. */
  | 'KUBE_TIMEOUT'
  /** The API server answered with a status other than 200. */
  | 'KUBE_HTTP'
  /** An answer or a watch event that is not what the API promises. */
  | 'KUBE_DECODE'
  /** A watch's ERROR event (the API server's Status object). */
  | 'KUBE_WATCH_ERROR'
  /** The object was never seen: its absence is not taken as a deletion. */
  | 'KUBE_NOT_FOUND';

export class KubeApiError extends CodedError<KubeErrorCode> {
  override readonly name = 'KubeApiError';
  readonly status: number | undefined;

  constructor(code: KubeErrorCode, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status;
  }
}
