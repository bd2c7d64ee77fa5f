// Where the agent finds the Kubernetes API server and with what it proves who it is: the
// variables the kubelet gives every pod (KUBERNETES_SERVICE_HOST/PORT: the `kubernetes` Service,
// reachable from the host network too), the cluster's CA bundle (the kube-root-ca.crt ConfigMap,
// projected by the chart), and the agent's own pod-bound token, read again for every request
// because the kubelet rotates it.

export interface KubeAccess {
  /** e.g. https://10.96.0.1:443 or https://[fd00::1]:443; null: not running in a cluster. */
  server: string | null;
  caFile: string;
  tokenFile: string;
}

/** The in-cluster API server URL from the kubelet's variables, or null when they name none. */
export function inClusterServer(env: NodeJS.ProcessEnv): string | null {
  const host = env.KUBERNETES_SERVICE_HOST?.trim();
  const port = env.KUBERNETES_SERVICE_PORT?.trim() || '443';
  if (!host || !/^\d{1,5}$/.test(port)) return null;
  // An IPv6 literal must be bracketed in a URL (a single-stack IPv6 cluster's Service address).
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `https://${h}:${port}`;
}
