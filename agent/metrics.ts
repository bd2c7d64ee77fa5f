// The agent's Prometheus metrics (served on 15020). Labels follow the golden-signal convention
// of meshes (reporter, source and destination workload, namespace and identity) so that the same
// dashboards read Weft and its peers.
import { isMainThread } from 'node:worker_threads';
import { Counter, Gauge, Histogram, Registry, type RegistryContentType, collectDefaultMetrics } from 'prom-client';

// OpenMetrics-typed, because prom-client keeps exemplars only in such registries; the Prometheus
// text format is still what a scraper gets unless it asks for OpenMetrics (renderMetrics).
export const registry = new Registry<RegistryContentType>();
registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
// Process figures once per process: a data-plane worker (workers.ts) would report the same
// process again, and the node's registry sums what the workers report.
if (isMainThread) collectDefaultMetrics({ register: registry, prefix: 'weft_agent_' });

const peerLabels = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
  'response_flags',
] as const;

export type PeerLabels = Record<(typeof peerLabels)[number], string>;

export const tcpOpened = new Counter({ name: 'weft_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: peerLabels, registers: [registry] });
export const tcpClosed = new Counter({ name: 'weft_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: peerLabels, registers: [registry] });
export const tcpReceived = new Counter({ name: 'weft_tcp_received_bytes_total', help: 'Bytes received from the connection initiator', labelNames: peerLabels, registers: [registry] });
export const tcpSent = new Counter({ name: 'weft_tcp_sent_bytes_total', help: 'Bytes sent to the connection initiator', labelNames: peerLabels, registers: [registry] });

export const enrolledPods = new Gauge({ name: 'weft_enrolled_pods', help: 'Pods on this node whose traffic the agent captures', registers: [registry] });
export const syncConnected = new Gauge({ name: 'weft_xds_connected', help: '1 while the agent is connected to the controller', registers: [registry] });
export const syncRevision = new Gauge({ name: 'weft_xds_revision', help: 'Revision of the last applied controller state', registers: [registry] });
export const certExpiry = new Gauge({
  name: 'weft_certificate_expiry_seconds',
  help: 'Unix time at which a workload certificate held by the agent expires',
  labelNames: ['identity'],
  registers: [registry],
});
/** Alert on any increase: a workload lost its certificate (new meshed connections to and from it are refused). */
export const certExpired = new Counter({
  name: 'weft_certificates_expired_total',
  help: 'Workload certificates that expired before a renewal arrived (the controller away for half a lifetime or more)',
  registers: [registry],
});

/**
 * Every authorization decision the agent takes, by the policy and rule that took it. `policy` is
 * `none` for the default (no policy applies → allow; ALLOW policies apply but none matched →
 * deny). `layer` is `l4` for a connection, `l7` for an HTTP request. AUDIT and DENY decisions say
 * who was audited or denied: `source_workload` (the workload name, never a pod or an address)
 * and `source_workload_namespace`, `unknown` for a client outside the mesh. ALLOW leaves both
 * empty: it is the bulk of decisions and per-source allow counts are weft_requests_total's job.
 * So the series are bounded by policies × rules × the workloads a policy audits or denies.
 */
export const policyDecisions = new Counter({
  name: 'weft_policy_decisions_total',
  help: 'Authorization decisions (allow, deny, audit) by policy and rule; audit and deny by source workload',
  labelNames: ['policy', 'rule', 'decision', 'layer', 'source_workload', 'source_workload_namespace'],
  registers: [registry],
});
/** Open connections closed because a policy change now denies them. */
export const policyRevoked = new Counter({
  name: 'weft_policy_connections_closed_total',
  help: 'Open connections closed because a policy change denies them',
  labelNames: ['policy', 'rule'],
  registers: [registry],
});

const requestLabels = [...peerLabels.filter((l) => l !== 'response_flags'), 'request_protocol', 'response_code', 'grpc_response_status'] as const;
export type RequestLabels = Record<(typeof requestLabels)[number], string>;
export const requests = new Counter({ name: 'weft_requests_total', help: 'HTTP requests handled at L7', labelNames: requestLabels, registers: [registry] });
export const requestDuration = new Histogram({
  name: 'weft_request_duration_seconds',
  help: 'HTTP request duration at L7, from request headers to the end of the response',
  labelNames: requestLabels,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  // A sampled request's trace ID rides on its bucket (OpenMetrics exemplars): a latency spike
  // on a dashboard links to a trace of it.
  enableExemplars: true,
  registers: [registry],
});

/**
 * Spans lost before reaching the collector: `queue_full` (export is behind), `export_failed` (no
 * answer by the deadline, or an error), `collector_failing` (while exports fail, only one batch waits),
 * `export_busy` (the exporter still held the previous batch).
 */
export const traceSpansDropped = new Counter({
  name: 'weft_trace_spans_dropped_total',
  help: 'Spans dropped before export: the export queue was full, or their export failed',
  labelNames: ['reason'],
  registers: [registry],
});
export const traceSpansExported = new Counter({ name: 'weft_trace_spans_exported_total', help: 'Spans the collector accepted', registers: [registry] });

/** Whether a scrape's Accept header asks for OpenMetrics (which carries exemplars). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('application/openmetrics-text');
}

let rendering: Promise<unknown> = Promise.resolve();

/**
 * The registry as text, in OpenMetrics when asked, else in the Prometheus format. prom-client
 * renames counters while it renders OpenMetrics (it strips `_total` from their names for good),
 * so renders take turns and the names are put back after each.
 */
export function renderMetrics(openMetrics: boolean, from: Registry<RegistryContentType> = registry): Promise<{ contentType: string; text: string }> {
  const run = async (): Promise<{ contentType: string; text: string }> => {
    const names = from.getMetricsAsArray().map((m) => [m, m.name] as const);
    const contentType = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
    from.setContentType(contentType);
    try {
      return { contentType, text: await from.metrics() };
    } finally {
      for (const [m, name] of names) (m as { name: string }).name = name;
      from.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    }
  };
  const next = rendering.then(run, run);
  rendering = next.catch(() => {});
  return next;
}
