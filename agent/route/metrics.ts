// Metrics of routed requests, reported by the client's node agent (the one that routed them).
// `route` is `<kind>/<namespace>/<name>` (or `none` when no route applied and the Service itself
// was the backend), `rule` the rule's name or index, `backend` `<namespace>/<service>:<port>`.
import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics.ts';

const labels = ['source_workload', 'source_workload_namespace', 'destination_service', 'route', 'rule', 'backend', 'response_code'] as const;
export type RouteRequestLabels = Record<(typeof labels)[number], string>;

export const routeRequests = new Counter({
  name: 'weft_route_requests_total',
  help: 'HTTP requests routed by the client node agent, by route, rule, backend and final status',
  labelNames: labels,
  registers: [registry],
});

export const routeRequestDuration = new Histogram({
  name: 'weft_route_request_duration_seconds',
  help: 'Time from a routed request to its response headers, retries included',
  labelNames: ['destination_service', 'route', 'backend'],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

/**
 * `reason`: the status code that was retried, or `connect` for a connection that failed. The
 * source workload labels are the client's, as on weft_route_requests_total, so that a workload's
 * retries can be shown beside its routed requests (the workload dashboard does).
 */
export const routeRetries = new Counter({
  name: 'weft_route_retries_total',
  help: 'Retries of routed requests, by the reason for retrying',
  labelNames: ['source_workload', 'source_workload_namespace', 'destination_service', 'route', 'rule', 'backend', 'reason'],
  registers: [registry],
});

export const routeRetriesRefused = new Counter({
  name: 'weft_route_retry_budget_exhausted_total',
  help: 'Retries not made because the retry budget was spent',
  labelNames: ['destination_service', 'route', 'rule'],
  registers: [registry],
});

/** `timeout`: `request` (timeouts.request) or `backend_request` (timeouts.backendRequest, per attempt); source labels as on retries. */
export const routeTimeouts = new Counter({
  name: 'weft_route_timeouts_total',
  help: 'Routed requests or attempts that ran out of time',
  labelNames: ['source_workload', 'source_workload_namespace', 'destination_service', 'route', 'rule', 'timeout'],
  registers: [registry],
});

export const routeEjections = new Counter({
  name: 'weft_route_endpoint_ejections_total',
  help: 'Endpoints set aside by the client node agent after connections to them failed in a row',
  labelNames: ['backend'],
  registers: [registry],
});

/**
 * RequestMirror copies, by outcome: `sent` (the mirror backend answered, whatever the status),
 * `failed` (no answer: `connect`, `refused` by policy, `reset`, `timeout`, `no_endpoint`) or
 * `dropped` (never sent: `limit` of copies in flight, `body_too_large`, `aborted` by the client).
 */
export const routeMirrors = new Counter({
  name: 'weft_route_mirror_requests_total',
  help: 'RequestMirror copies of routed requests, by mirror backend and outcome',
  labelNames: ['destination_service', 'route', 'mirror_backend', 'result', 'reason'],
  registers: [registry],
});
