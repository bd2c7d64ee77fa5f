// The Kubernetes objects the controller reads, each kept current by its own ResourceWatch:
// Pods, Namespaces, Services, EndpointSlices (discovery.k8s.io/v1) and Nodes, cluster-wide.
import { CoreV1Api, DiscoveryV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1EndpointSlice, V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../../api/log.ts';
import type { BackoffOptions } from './backoff.ts';
import { watchResource } from './resource-watch.ts';
import type { ResourceWatch } from './resource-watch.ts';

export interface ClusterWatches {
  pods: ResourceWatch<V1Pod>;
  namespaces: ResourceWatch<V1Namespace>;
  services: ResourceWatch<V1Service>;
  endpointSlices: ResourceWatch<V1EndpointSlice>;
  nodes: ResourceWatch<V1Node>;
  /** Every watch, for iteration (readiness, metrics). */
  all(): ResourceWatch<V1Pod | V1Namespace | V1Service | V1EndpointSlice | V1Node>[];
  /** Resolves once every watch has synced. */
  readonly whenSynced: Promise<void>;
  synced(): boolean;
  start(): void;
  stop(): Promise<void>;
}

export interface ClusterWatchOptions {
  log: Logger;
  backoff?: BackoffOptions;
  onRestart?: (resource: string) => void;
}

export function createClusterWatches(kubeConfig: KubeConfig, opts: ClusterWatchOptions): ClusterWatches {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  const log = opts.log.child({ component: 'watch' });
  const common = { kubeConfig, log, ...(opts.backoff ? { backoff: opts.backoff } : {}), ...(opts.onRestart ? { onRestart: opts.onRestart } : {}) };

  const pods = watchResource<V1Pod>({ ...common, resource: 'pods', path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() });
  const namespaces = watchResource<V1Namespace>({ ...common, resource: 'namespaces', path: '/api/v1/namespaces', list: () => core.listNamespace() });
  const services = watchResource<V1Service>({ ...common, resource: 'services', path: '/api/v1/services', list: () => core.listServiceForAllNamespaces() });
  const endpointSlices = watchResource<V1EndpointSlice>({
    ...common,
    resource: 'endpointslices',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    list: () => discovery.listEndpointSliceForAllNamespaces(),
  });
  const nodes = watchResource<V1Node>({ ...common, resource: 'nodes', path: '/api/v1/nodes', list: () => core.listNode() });

  const every = [pods, namespaces, services, endpointSlices, nodes] as ResourceWatch<V1Pod | V1Namespace | V1Service | V1EndpointSlice | V1Node>[];
  const whenSynced = Promise.all(every.map((w) => w.whenSynced)).then(() => undefined);
  return {
    pods,
    namespaces,
    services,
    endpointSlices,
    nodes,
    all: () => every,
    whenSynced,
    synced: () => every.every((w) => w.synced()),
    start: () => every.forEach((w) => w.start()),
    stop: async () => void (await Promise.all(every.map((w) => w.stop()))),
  };
}
