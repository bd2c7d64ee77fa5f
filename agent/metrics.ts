// The agent's Prometheus metrics (served on 15020). Labels follow the golden-signal convention
// of meshes (reporter, source and destination workload, namespace and identity) so that the same
// dashboards read Weft and its peers.
import { isMainThread } from 'node:worker_threads';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
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

/**
 * Every authorization decision the agent takes, by the policy and rule that took it. `policy` is
 * `none` for the default (no policy applies → allow; ALLOW policies apply but none matched →
 * deny). `layer` is `l4` for a connection, `l7` for an HTTP request.
 */
export const policyDecisions = new Counter({
  name: 'weft_policy_decisions_total',
  help: 'Authorization decisions (allow, deny, audit) by policy and rule',
  labelNames: ['policy', 'rule', 'decision', 'layer'],
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
  registers: [registry],
});
