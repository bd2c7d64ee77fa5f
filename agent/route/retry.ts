// A rule's retry, as both routed paths decide it (HTTP/1.1 in proxy.ts, HTTP/2 in h2.ts): which
// failed attempt is tried again, within the budget of its (Service, route, rule) — or of its
// backend Service, when an XBackendTrafficPolicy sets one — counted the same way whichever
// protocol the client speaks. A retry the budget refuses answers 503, as the Gateway API asks of a
// retry budget: the client learns that the mesh held the retry back, not only that the attempt failed.
import type { RouteBackend, RouteRetry } from '../../api/route.ts';
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

/**
 * Retry budgets, shared by the HTTP/1.1 and HTTP/2 paths of an agent: per (Service, route, rule)
 * with Weft's defaults, or per backend Service with its XBackendTrafficPolicy's, then shared by
 * every route and rule that sends to it. A budget nobody asked for in the last 10 minutes is
 * dropped (routes and policies come and go).
 */
export class RetryBudgets {
  readonly #budgets = new Map<string, { budget: RetryBudget; used: number; keepMs: number }>();
  #swept = Date.now();

  /**
   * Records a request in the budget its retries are taken from, and returns the budget; undefined
   * when the rule does not retry, which then needs no budget (and a routed request no bookkeeping).
   */
  request(l: RetryLabels, retry: RouteRetry | undefined, backend?: RouteBackend): RetryBudget | undefined {
    if (!retry) return undefined;
    const now = Date.now();
    const p = backend?.retryBudget;
    // The parameters are part of the key: a policy changed is a budget started afresh.
    const key = p ? `policy|${backend?.service}|${p.policy}|${p.percent}|${p.intervalMs}|${p.minCount}|${p.minIntervalMs}` : `rule|${l.destination_service}|${l.route}|${l.rule}`;
    let e = this.#budgets.get(key);
    if (!e) {
      const budget = p ? new RetryBudget({ ratio: p.percent / 100, windowMs: p.intervalMs, minPerSecond: (p.minCount * 1000) / p.minIntervalMs }) : new RetryBudget();
      this.#budgets.set(key, (e = { budget, used: now, keepMs: Math.max(IDLE_BUDGET_MS, p?.intervalMs ?? 0) }));
    }
    e.used = now;
    e.budget.request(now);
    if (now - this.#swept > IDLE_BUDGET_MS) this.#sweep(now);
    return e.budget;
  }

  get size(): number {
    return this.#budgets.size;
  }

  #sweep(now: number): void {
    this.#swept = now;
    for (const [k, e] of this.#budgets) if (now - e.used > e.keepMs) this.#budgets.delete(k);
  }
}

/** A budget not asked for this long (or for its window, if longer) is forgotten: nothing of it is left to count. */
const IDLE_BUDGET_MS = 600_000;

/**
 * Whether attempt `n` of `attempts` is tried again: a failed connect, an attempt out of time
 * (timeouts.backendRequest), a status the rule lists or a gRPC status it lists (reason
 * grpc_<code>), never one refused by policy, and only if the budget has a retry left. Counts the
 * retry, or the refusal by the budget. 'retry': try again; 'exhausted': it would have been, but
 * the budget is spent (the caller answers 503); false: the attempt's outcome is the answer.
 */
export function retryAfter(a: AttemptResult, o: { retry: RouteRetry | undefined; n: number; attempts: number; budget: RetryBudget | undefined; labels: RetryLabels; backend: string }): 'retry' | 'exhausted' | false {
  const grpc = a.grpcStatus !== undefined && (o.retry?.grpcCodes?.includes(a.grpcStatus) ?? false);
  const retriable = a.failure === 'connect' || a.failure === 'backend_request' || (o.retry?.codes.includes(a.status) ?? false) || grpc;
  if (!retriable || o.n >= o.attempts || a.failure === 'refused' || !o.budget) return false;
  const l = { destination_service: o.labels.destination_service, route: o.labels.route, rule: o.labels.rule };
  if (!o.budget.tryRetry(Date.now())) {
    routeRetriesRefused.inc(l);
    return 'exhausted';
  }
  const source = { source_workload: o.labels.source_workload, source_workload_namespace: o.labels.source_workload_namespace };
  routeRetries.inc({ ...source, ...l, backend: o.backend, reason: a.failure ?? (grpc ? `grpc_${a.grpcStatus}` : String(a.status)) });
  return 'retry';
}

/** The wait before attempt n + 1: the rule's backoff, doubled per retry. */
export function backoffAfter(retry: RouteRetry | undefined, n: number): number {
  return Math.min((retry?.backoffMs ?? 0) * 2 ** (n - 1), MAX_BACKOFF_MS);
}
