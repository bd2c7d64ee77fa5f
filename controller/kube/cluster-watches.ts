// The Kubernetes objects the controller reads, each kept current by its own ResourceWatch:
// Pods, Namespaces, Services, EndpointSlices (discovery.k8s.io/v1), and Weft's own
// AccessPolicies and MeshTLSPolicies (weft.dev), cluster-wide.
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api } from '@kubernetes/client-node';
import type { KubernetesListObject } from '@kubernetes/client-node';
import { ACCESS_POLICY_PLURAL, MESH_TLS_POLICY_PLURAL, POLICY_GROUP, POLICY_VERSION } from '../../api/policy/model.ts';
import type { AccessPolicy, MeshTLSPolicy } from '../../api/policy/types.gen.ts';
import type { KubeConfig, V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../../api/log.ts';
import type { BackoffOptions } from './backoff.ts';
import { watchResource } from './resource-watch.ts';
import type { ResourceWatch } from './resource-watch.ts';

export interface ClusterWatches {
  pods: ResourceWatch<V1Pod>;
  namespaces: ResourceWatch<V1Namespace>;
  services: ResourceWatch<V1Service>;
  endpointSlices: ResourceWatch<V1EndpointSlice>;
  accessPolicies: ResourceWatch<AccessPolicy>;
  meshTLSPolicies: ResourceWatch<MeshTLSPolicy>;
  /** Every watch, for iteration (readiness, metrics). */
  all(): ResourceWatch<WatchedObject>[];
  /** Resolves once every watch has synced. */
  readonly whenSynced: Promise<void>;
  synced(): boolean;
  start(): void;
  stop(): Promise<void>;
}

type WatchedObject = V1Pod | V1Namespace | V1Service | V1EndpointSlice | AccessPolicy | MeshTLSPolicy;

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

  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  // The generic custom-object client returns untyped lists; the informer needs the list shape.
  const listCustom = <T extends AccessPolicy | MeshTLSPolicy>(plural: string) => async () =>
    (await custom.listClusterCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, plural })) as KubernetesListObject<T>;
  const accessPolicies = watchResource<AccessPolicy>({
    ...common,
    resource: ACCESS_POLICY_PLURAL,
    path: `/apis/${POLICY_GROUP}/${POLICY_VERSION}/${ACCESS_POLICY_PLURAL}`,
    list: listCustom<AccessPolicy>(ACCESS_POLICY_PLURAL),
  });
  const meshTLSPolicies = watchResource<MeshTLSPolicy>({
    ...common,
    resource: MESH_TLS_POLICY_PLURAL,
    path: `/apis/${POLICY_GROUP}/${POLICY_VERSION}/${MESH_TLS_POLICY_PLURAL}`,
    list: listCustom<MeshTLSPolicy>(MESH_TLS_POLICY_PLURAL),
  });

  const every = [pods, namespaces, services, endpointSlices, accessPolicies, meshTLSPolicies] as ResourceWatch<WatchedObject>[];
  const whenSynced = Promise.all(every.map((w) => w.whenSynced)).then(() => undefined);
  return {
    pods,
    namespaces,
    services,
    endpointSlices,
    accessPolicies,
    meshTLSPolicies,
    all: () => every,
    whenSynced,
    synced: () => every.every((w) => w.synced()),
    start: () => every.forEach((w) => w.start()),
    stop: async () => void (await Promise.all(every.map((w) => w.stop()))),
  };
}
