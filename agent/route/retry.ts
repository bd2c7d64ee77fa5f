// A rule's retry, as both routed paths decide it (HTTP/1.1 in proxy.ts, HTTP/2 in h2.ts): which
// failed attempt is tried again, within the budget of its (Service, route, rule), counted the same
// way whichever protocol the client speaks.
import type { RouteRetry } from '../../api/route.ts';
import { routeRetries, routeRetriesRefused } from './metrics.ts';
import { RetryBudget } from './select.ts';

/** Request bodies up to this size are kept for a retry to send again; a larger one is sent once. */
export const MAX_RETRY_BODY = 64 * 1024;
/** The longest wait between two attempts, however far the doubling got. */
const MAX_BACKOFF_MS = 10_000;

/** The client workload's labels and its rule's; the budget is the rule's, shared by every client. */
export interface RetryLabels {
  source_workload: string;
  source_workload_namespace: string;
  destination_service: string;
  route: string;
  rule: string;
}

/** One failed or answered attempt. `failure`: why there is no response (connect, refused, backend_request, reset, ...). */
export interface AttemptResult {
  status: number;
  failure?: string | undefined;
  /** A gRPC call that failed before any answer: the status of its trailers-only response. */
  grpcStatus?: number | undefined;
}

/** Retry budgets per (Service, route, rule), shared by the HTTP/1.1 and HTTP/2 paths of an agent. */
export class RetryBudgets {
  readonly #budgets = new Map<string, RetryBudget>();

  /**
   * Records a request of the rule in its budget, and returns the budget; undefined when the rule
   * does not retry, which then needs no budget (and a routed request no bookkeeping).
   */
  request(l: RetryLabels, retry: RouteRetry | undefined): RetryBudget | undefined {
    if (!retry) return undefined;
    const key = `${l.destination_service}|${l.route}|${l.rule}`;
    let b = this.#budgets.get(key);
    if (!b) this.#budgets.set(key, (b = new RetryBudget()));
    b.request(Date.now());
    return b;
  }
}

/**
 * Whether attempt `n` of `attempts` is tried again: a failed connect, an attempt out of time
 * (timeouts.backendRequest), a status the rule lists or a gRPC status it lists (reason
 * grpc_<code>), never one refused by policy, and only if the budget has a retry left. Counts the
 * retry, or the refusal by the budget.
 */
export function retryAfter(a: AttemptResult, o: { retry: RouteRetry | undefined; n: number; attempts: number; budget: RetryBudget | undefined; labels: RetryLabels; backend: string }): boolean {
  const grpc = a.grpcStatus !== undefined && (o.retry?.grpcCodes?.includes(a.grpcStatus) ?? false);
  const retriable = a.failure === 'connect' || a.failure === 'backend_request' || (o.retry?.codes.includes(a.status) ?? false) || grpc;
  if (!retriable || o.n >= o.attempts || a.failure === 'refused' || !o.budget) return false;
  const l = { destination_service: o.labels.destination_service, route: o.labels.route, rule: o.labels.rule };
  if (!o.budget.tryRetry(Date.now())) {
    routeRetriesRefused.inc(l);
    return false;
  }
  const source = { source_workload: o.labels.source_workload, source_workload_namespace: o.labels.source_workload_namespace };
  routeRetries.inc({ ...source, ...l, backend: o.backend, reason: a.failure ?? (grpc ? `grpc_${a.grpcStatus}` : String(a.status)) });
  return true;
}

/** The wait before attempt n + 1: the rule's backoff, doubled per retry. */
export function backoffAfter(retry: RouteRetry | undefined, n: number): number {
  return Math.min((retry?.backoffMs ?? 0) * 2 ** (n - 1), MAX_BACKOFF_MS);
}
