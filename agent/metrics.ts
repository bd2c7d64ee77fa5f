// The agent's Prometheus metrics (served on 15020). Labels follow the golden-signal convention
// of meshes (reporter, source and destination workload, namespace and identity) so that the same
// dashboards read Weft and its peers.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'weft_agent_' });

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
