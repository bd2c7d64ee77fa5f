// Cluster DNS on real nodes: CoreDNS (built from its pinned module, playground/build/runtime) as a
// Deployment behind the kube-dns Service, as kubeadm and most distributions install it, so that
// pods — and hostNetwork pods with dnsPolicy ClusterFirstWithHostNet, like Weft's agent — reach
// Services by name. No upstream: the playground has no network beyond itself, so names outside
// the cluster get no answer rather than a slow timeout.
import { join } from 'node:path';
import type { PlaygroundPlan } from './config.ts';
import { run } from './exec.ts';
import { etcFiles, type ImageSpec } from './images.ts';
import { readVersions } from './config.ts';

/** The kube-dns Service's address: the tenth of the service range, as kubeadm chooses. */
export function clusterDNSIP(p: Pick<PlaygroundPlan, 'serviceCIDR'>): string {
  const [a, b, c] = p.serviceCIDR.split('/')[0]?.split('.') ?? [];
  return `${a}.${b}.${c}.10`;
}

export function corednsImageRef(): string {
  return `weft.local/coredns:${readVersions().COREDNS_VERSION ?? 'unknown'}`;
}

export function corednsImage(binDir: string): ImageSpec {
  return {
    ref: corednsImageRef(),
    files: [{ src: join(binDir, 'coredns'), dest: 'coredns' }],
    dirs: ['tmp', 'etc/coredns'],
    texts: etcFiles(),
    entrypoint: ['/coredns'],
  };
}

const COREFILE = `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}
`;

export function clusterDNSManifests(p: PlaygroundPlan): object[] {
  const labels = { 'k8s-app': 'kube-dns' };
  const ns = 'kube-system';
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: ns } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        { apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: ns }],
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: ns }, data: { Corefile: COREFILE } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: ns, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            priorityClassName: 'system-cluster-critical',
            // CoreDNS must not ask itself: Default is the node's (empty) resolv.conf.
            dnsPolicy: 'Default',
            terminationGracePeriodSeconds: 5,
            containers: [
              {
                name: 'coredns',
                image: corednsImageRef(),
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                ports: [
                  { name: 'dns', containerPort: 53, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
                ],
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] }, readOnlyRootFilesystem: true },
                resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { memory: '128Mi' } },
                livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10, failureThreshold: 5 },
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 2 },
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: ns, labels: { ...labels, 'kubernetes.io/name': 'CoreDNS' } },
      spec: {
        selector: labels,
        clusterIP: clusterDNSIP(p),
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          { name: 'metrics', port: 9153, protocol: 'TCP' },
        ],
      },
    },
  ];
}

/** Applies the manifests and waits for CoreDNS to be ready. */
export async function installClusterDNS(p: PlaygroundPlan): Promise<void> {
  const kubectl = (args: string[], input?: string) => run(join(p.binDir, 'kubectl'), [`--kubeconfig=${p.paths.adminKubeconfig}`, ...args], { timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: clusterDNSManifests(p) }));
  await kubectl(['-n', 'kube-system', 'rollout', 'status', 'deployment/coredns', '--timeout=90s']);
}
