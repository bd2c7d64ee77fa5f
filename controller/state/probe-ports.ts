// The TCP ports the kubelet probes on a pod: the node agent lets the node reach exactly these on
// the pod's own IPs, and captures everything else the node sends to a meshed pod (the kubelet
// probes from the node's network namespace, where hostNetwork pods and node processes live too).
// Pure, like compute.ts: from the pod spec alone.
import type { IntOrString, V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';

/**
 * The port the kubelet connects to, resolved as the kubelet does (prober's extractPort): a
 * number, else a name among the container's own ports, else a number written as a string.
 */
export function resolveProbePort(port: IntOrString | undefined, container: V1Container): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port !== 'string') return undefined;
  const named = container.ports?.find((p) => p.name === port)?.containerPort;
  if (named !== undefined) return named;
  return /^\d+$/.test(port) ? Number(port) : undefined;
}

/** The port one probe connects to on the pod's IP; none for exec probes, or when `host` sends
 * the kubelet elsewhere (then nothing on the pod needs exempting). */
function probedPort(probe: V1Probe, container: V1Container): number | undefined {
  if (probe.httpGet && !probe.httpGet.host) return resolveProbePort(probe.httpGet.port, container);
  if (probe.tcpSocket && !probe.tcpSocket.host) return resolveProbePort(probe.tcpSocket.port, container);
  if (probe.grpc) return probe.grpc.port;
  return undefined;
}

/** Sorted and unique, over every container (init containers too: restartable sidecars are probed). */
export function probePorts(pod: V1Pod): number[] {
  const ports = new Set<number>();
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      const port = probe ? probedPort(probe, c) : undefined;
      if (port !== undefined && Number.isInteger(port) && port >= 1 && port <= 65535) ports.add(port);
    }
  }
  return [...ports].sort((a, b) => a - b);
}
