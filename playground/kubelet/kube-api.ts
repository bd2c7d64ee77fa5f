// The kubelet's view of the API server: typed clients from the node's kubeconfig, and the few pod
// operations the pod workers need (behind an interface, so that a worker reads as kubelet logic,
// not as HTTP plumbing).
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { DataLookup, ServiceLookup } from './env.ts';
import { httpStatus } from './errors.ts';
import { statusPatch, type PodStatusJSON } from './pod-status.ts';
import type { PodRef } from './pod-state-store.ts';

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
}

export function loadClients(kubeconfigPath: string): KubeClients {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return { kc, core: kc.makeApiClient(CoreV1Api), coordination: kc.makeApiClient(CoordinationV1Api) };
}

/**
 * Strategic merge patches, as the kubelet sends for status: lists with a merge key (conditions by
 * type, addresses by type, podIPs by ip) merge with what others wrote instead of replacing it.
 */
export const strategicMerge = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** What a pod worker asks of the API server. */
export interface PodApi {
  patchStatus(pod: PodRef, status: PodStatusJSON): Promise<void>;
  /** Removes the pod object now (grace period 0), only if it is still the pod with this UID. */
  deletePod(pod: PodRef): Promise<void>;
  lookup: DataLookup;
  services: ServiceLookup;
}

export function podApi(core: CoreV1Api): PodApi {
  return {
    async patchStatus(pod, status) {
      await core.patchNamespacedPodStatus({ namespace: pod.namespace, name: pod.name, body: statusPatch(status) }, strategicMerge);
    },
    async deletePod(pod) {
      try {
        await core.deleteNamespacedPod({
          namespace: pod.namespace,
          name: pod.name,
          body: { gracePeriodSeconds: 0, preconditions: { uid: pod.uid } },
        });
      } catch (err) {
        // Gone already, or the name now belongs to a new pod (UID precondition): nothing to delete.
        const status = httpStatus(err);
        if (status !== 404 && status !== 409) throw err;
      }
    },
    async services(namespace) {
      return (await core.listNamespacedService({ namespace })).items;
    },
    async lookup(kind, namespace, name) {
      try {
        if (kind === 'configMap') {
          const cm = await core.readNamespacedConfigMap({ namespace, name });
          const binary = Object.entries(cm.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]);
          return { ...Object.fromEntries(binary), ...(cm.data ?? {}) } as Record<string, string>;
        }
        const secret = await core.readNamespacedSecret({ namespace, name });
        return Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
      } catch (err) {
        if (httpStatus(err) === 404) return undefined;
        throw err;
      }
    },
  };
}
