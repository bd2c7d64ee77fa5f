// Pure functions from Kubernetes objects to the resources of the agent-sync protocol
// (api/agent-sync.ts). No I/O and no clock: the reconciler feeds them objects from the informer
// caches, and the same inputs always give the same output, so that recomputing everything is a
// safe, idempotent operation and unchanged objects never cost a revision.
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { MESH_ANNOTATION, MESH_LABEL, spiffeId } from '../../api/agent-sync.ts';
import type { Endpoint, Service, ServicePort, Workload } from '../../api/agent-sync.ts';
import { TRACE_SAMPLING_ANNOTATION, parseRatio } from '../../api/tracing.ts';
import { probePorts } from './probe-ports.ts';

/** The label the EndpointSlice controller puts on every slice it manages for a Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export const DEFAULT_SERVICE_ACCOUNT = 'default';

export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

// ---- opt-in ------------------------------------------------------------------------------------

export type MeshReason =
  | 'pod-annotation' // the pod says weft.dev/mesh: "enabled"
  | 'namespace-label' // the namespace says weft.dev/mesh=enabled and the pod does not opt out
  | 'pod-opted-out' // the pod says weft.dev/mesh: "disabled"
  | 'not-opted-in' // neither the pod nor its namespace asked
  | 'host-network' // the pod shares the node's network: nothing to capture
  | 'not-scheduled'; // no node yet: no agent can capture it

export interface MeshDecision {
  meshed: boolean;
  reason: MeshReason;
}

/**
 * DESIGN.md's opt-in rule. The pod's annotation wins over its namespace's label in both
 * directions; host-network pods are never meshed, whatever they ask.
 */
export function meshDecision(pod: V1Pod, namespace: V1Namespace | undefined): MeshDecision {
  if (pod.spec?.hostNetwork === true) return { meshed: false, reason: 'host-network' };
  if (!pod.spec?.nodeName) return { meshed: false, reason: 'not-scheduled' };
  const annotation = pod.metadata?.annotations?.[MESH_ANNOTATION];
  if (annotation === 'enabled') return { meshed: true, reason: 'pod-annotation' };
  if (annotation === 'disabled') return { meshed: false, reason: 'pod-opted-out' };
  if (namespace?.metadata?.labels?.[MESH_LABEL] === 'enabled') return { meshed: true, reason: 'namespace-label' };
  return { meshed: false, reason: 'not-opted-in' };
}

// ---- workloads ---------------------------------------------------------------------------------

/** The pod's addresses, dual-stack aware (`status.podIPs`, else the legacy `status.podIP`). */
export function podIPs(pod: V1Pod): string[] {
  const listed = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (listed.length > 0) return listed;
  const single = pod.status?.podIP;
  return single ? [single] : [];
}

export function serviceAccountOf(pod: V1Pod): string {
  // serviceAccount is the deprecated alias the API server still mirrors; "default" is what
  // admission fills in, but objects from older writers may carry neither.
  return pod.spec?.serviceAccountName || pod.spec?.serviceAccount || DEFAULT_SERVICE_ACCOUNT;
}

/** Succeeded and Failed pods never run again; their IP may already belong to another pod. */
export function isTerminal(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

/**
 * The Workload an agent needs for a pod, or null when the pod is not an address in the pod
 * network: host-network pods (their IP is the node's, shared by every host-network pod on it),
 * unscheduled pods, finished pods. Those are never meshed, so leaving them out loses nothing,
 * and an agent's IP → workload index never points at a node or at a dead pod's recycled address.
 * A scheduled pod without an IP yet IS announced (with no IPs): its node's agent must know
 * whether to capture it when the CNI plugin asks, which is before the pod has an address.
 */
export function computeWorkload(pod: V1Pod, namespace: V1Namespace | undefined, trustDomain: string): Workload | null {
  const ns = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  if (!ns || !name) return null;
  if (pod.spec?.hostNetwork === true || isTerminal(pod) || !pod.spec?.nodeName) return null;
  const ips = podIPs(pod);
  const serviceAccount = serviceAccountOf(pod);
  const hostIPs = nodeIPs(pod);
  return {
    key: objectKey(ns, name),
    uid: pod.metadata?.uid ?? '',
    namespace: ns,
    name,
    node: pod.spec?.nodeName ?? '',
    ips,
    serviceAccount,
    identity: spiffeId(trustDomain, ns, serviceAccount),
    meshed: meshDecision(pod, namespace).meshed,
    labels: sortedRecord(pod.metadata?.labels ?? {}),
    namedPorts: namedContainerPorts(pod),
    ...(hostIPs.length > 0 ? { hostIPs } : {}),
    probePorts: probePorts(pod),
    ...traceSampling(pod, namespace),
  };
}

/**
 * The pod's, else its namespace's, `weft.dev/trace-sampling`: a ratio from 0 to 1 or a percentage
 * ("5%"). A value that does not parse is ignored (the chart's ratio applies), never an error.
 */
function traceSampling(pod: V1Pod, namespace: V1Namespace | undefined): { traceSampling?: number } {
  for (const text of [pod.metadata?.annotations?.[TRACE_SAMPLING_ANNOTATION], namespace?.metadata?.annotations?.[TRACE_SAMPLING_ANNOTATION]]) {
    const r = text === undefined ? undefined : parseRatio(text);
    if (r !== undefined) return { traceSampling: r };
  }
  return {};
}

/** The node's addresses as the pod's status reports them (`status.hostIPs`, else `status.hostIP`). */
function nodeIPs(pod: V1Pod): string[] {
  const listed = (pod.status?.hostIPs ?? []).map((h) => h.ip).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (listed.length > 0) return listed;
  return pod.status?.hostIP ? [pod.status.hostIP] : [];
}

/** `ports[].name` → `containerPort` over all containers (TCP only: only TCP is captured). */
export function namedContainerPorts(pod: V1Pod): Record<string, number> {
  const named: Record<string, number> = {};
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const p of c.ports ?? []) {
      if (p.name && (p.protocol ?? 'TCP') === 'TCP') named[p.name] = p.containerPort;
    }
  }
  return sortedRecord(named);
}

// ---- services ----------------------------------------------------------------------------------

// Port-name prefixes that imply an application protocol, after Istio's convention
// `<protocol>[-<suffix>]`, so that Services written for Istio work unchanged.
const NAMED_PROTOCOLS = new Set(['http', 'http2', 'https', 'grpc', 'grpc-web', 'tcp', 'tls', 'mongo', 'mysql', 'redis']);

// Kubernetes' standard appProtocol values (KEP-3726) and the protocol Weft treats them as.
const STANDARD_APP_PROTOCOLS: Record<string, string> = {
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'https',
};

/**
 * The application protocol of a Service port: its `appProtocol` when set (lower-cased, with the
 * kubernetes.io/ standard names mapped to plain ones), else what the port name implies
 * (`http-web` → `http`, `grpc-web` → `grpc-web`), else the transport in lower case (`tcp`).
 */
export function appProtocolFor(port: V1ServicePort): string {
  const declared = port.appProtocol?.trim().toLowerCase();
  if (declared) return STANDARD_APP_PROTOCOLS[declared] ?? declared;
  const name = (port.name ?? '').toLowerCase();
  if (name.startsWith('grpc-web') && (name.length === 8 || name[8] === '-')) return 'grpc-web';
  const prefix = name.split('-', 1)[0] ?? '';
  if (NAMED_PROTOCOLS.has(prefix)) return prefix;
  return (port.protocol ?? 'TCP').toLowerCase();
}

function servicePort(port: V1ServicePort): ServicePort {
  const protocol = port.protocol === 'UDP' || port.protocol === 'SCTP' ? port.protocol : 'TCP';
  return { name: port.name ?? '', port: port.port, protocol, appProtocol: appProtocolFor({ ...port, protocol }) };
}

/** The slices that belong to a Service: same namespace, labelled with its name. */
export function slicesOf(service: V1Service, slices: Iterable<V1EndpointSlice>): V1EndpointSlice[] {
  const ns = service.metadata?.namespace;
  const name = service.metadata?.name;
  const own: V1EndpointSlice[] = [];
  for (const s of slices) {
    if (s.metadata?.namespace === ns && s.metadata?.labels?.[SERVICE_NAME_LABEL] === name) own.push(s);
  }
  return own;
}

/**
 * Endpoints merged from all of a Service's EndpointSlices. An address that appears in more than
 * one slice (a pod moving between slices during an update) is listed once: ready if any slice
 * says so, with the union of the port mappings. FQDN slices are skipped (nothing to route to).
 * Sorted by IP so that the result does not depend on slice or informer order.
 */
export function mergeEndpoints(slices: readonly V1EndpointSlice[]): Endpoint[] {
  const byIP = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const ports: Record<string, number> = {};
    for (const p of slice.ports ?? []) {
      if (typeof p.port === 'number') ports[p.name ?? ''] = p.port;
    }
    for (const ep of slice.endpoints ?? []) {
      // Consumers may use only the first address: the API defines the others as fungible.
      const ip = ep.addresses[0];
      if (!ip) continue;
      // A nil ready condition means "unknown" and the API says to treat it as ready.
      const ready = ep.conditions?.ready ?? true;
      const ref = ep.targetRef;
      const workload = ref?.kind === 'Pod' && ref.name ? objectKey(ref.namespace ?? slice.metadata?.namespace ?? '', ref.name) : undefined;
      const seen = byIP.get(ip);
      if (seen) {
        seen.ready ||= ready;
        Object.assign(seen.ports, ports);
        if (seen.workload === undefined && workload !== undefined) seen.workload = workload;
        continue;
      }
      byIP.set(ip, { ip, ports: { ...ports }, ready, ...(workload !== undefined ? { workload } : {}) });
    }
  }
  return [...byIP.values()].sort((a, b) => compareStrings(a.ip, b.ip)).map((e) => ({ ...e, ports: sortedRecord(e.ports) }));
}

/**
 * The Service resource for a Kubernetes Service and its EndpointSlices (any slices: only the
 * Service's own are used). ExternalName Services are DNS aliases, not addresses: null.
 */
export function computeService(service: V1Service, slices: Iterable<V1EndpointSlice>): Service | null {
  const ns = service.metadata?.namespace;
  const name = service.metadata?.name;
  if (!ns || !name) return null;
  if (service.spec?.type === 'ExternalName') return null;
  const clusterIPs = (service.spec?.clusterIPs ?? (service.spec?.clusterIP ? [service.spec.clusterIP] : [])).filter((ip) => ip !== '' && ip !== 'None');
  return {
    key: objectKey(ns, name),
    namespace: ns,
    name,
    clusterIPs,
    ports: (service.spec?.ports ?? []).map(servicePort),
    endpoints: mergeEndpoints(slicesOf(service, slices)),
  };
}

// ---- helpers -----------------------------------------------------------------------------------

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Key order fixed, so that equal maps serialize (and compare) equal. */
function sortedRecord<V>(r: Record<string, V>): Record<string, V> {
  const out: Record<string, V> = {};
  for (const k of Object.keys(r).sort(compareStrings)) out[k] = r[k] as V;
  return out;
}
