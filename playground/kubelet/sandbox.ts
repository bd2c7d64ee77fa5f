// A pod's sandbox: its network namespace and its attachment to the node's pod network. Made once
// per pod and remembered on disk, so that a restarted kubelet finds it instead of running ADD again;
// torn down with DEL given the very configuration and result of the ADD.
import { createHash } from 'node:crypto';
import type { Attachment, ChainOptions } from './cni-chain.ts';
import { cniAdd, cniDel } from './cni-chain.ts';
import { loadNetworkConfig } from './cni-config.ts';
import { sandboxIPs } from './cni-result.ts';
import { KubeletError } from './errors.ts';
import type { Logger } from '../../api/log.ts';
import { createNetns, deleteNetns, netnsExists, netnsPath } from './netns.ts';
import type { PodRecord, PodRef, PodStateStore } from './pod-state-store.ts';

export interface SandboxDeps {
  store: PodStateStore;
  /** Where the node's network configuration lives. */
  cniConfDir: string;
  chain: ChainOptions;
  /** The node's own address: a hostNetwork pod's IP. */
  nodeIP: string;
  log: Logger;
}

export interface SandboxSpec extends PodRef {
  hostNetwork: boolean;
  /** Name of the pod's network namespace (podNetnsName()). */
  netns: string;
}

export interface Sandbox {
  /** The pod's namespace path, or null when the pod shares the node's network. */
  netnsPath: string | null;
  podIPs: string[];
}

/** CNI_CONTAINERID: stable for the pod's lifetime and unique, shaped like a runtime's 64-hex ID. */
export function sandboxId(podUID: string): string {
  return createHash('sha256').update(`weft-playground-sandbox/${podUID}`).digest('hex');
}

/** Creates the sandbox, or returns the one already made (by this kubelet or a previous run). */
export async function ensureSandbox(spec: SandboxSpec, deps: SandboxDeps): Promise<Sandbox> {
  const rec = await recordFor(spec, deps.store);
  if (rec.netns === null) return { netnsPath: null, podIPs: [deps.nodeIP] };

  const path = netnsPath(rec.netns);
  const existing = await deps.store.readNetwork(spec.uid);
  if (existing?.result && netnsExists(rec.netns)) {
    return { netnsPath: path, podIPs: sandboxIPs(existing.result, path) };
  }
  if (existing) {
    // An ADD that never finished (kubelet killed mid-way) or a namespace removed behind our back:
    // the spec wants a DEL before the attachment is made again.
    deps.log.warn('cleaning up an incomplete pod network before setting it up again', { netns: rec.netns });
    await cniDel(existing.config, existing.attachment, existing.result, deps.chain).catch((err: unknown) =>
      deps.log.warn('CNI DEL of the incomplete attachment failed', { err }),
    );
    await deps.store.clearNetwork(spec.uid);
  }

  const config = await loadNetworkConfig(deps.cniConfDir);
  const attachment: Attachment = {
    containerId: rec.sandboxId,
    netnsPath: path,
    ifName: 'eth0',
    args: [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', spec.namespace],
      ['K8S_POD_NAME', spec.name],
      ['K8S_POD_INFRA_CONTAINER_ID', rec.sandboxId],
      ['K8S_POD_UID', spec.uid],
    ],
  };
  await createNetns(rec.netns);
  // Recorded before ADD: if the kubelet dies during ADD, the next run knows what to DEL.
  await deps.store.writeNetwork(spec.uid, { config, attachment });
  try {
    const result = await cniAdd(config, attachment, deps.chain);
    const podIPs = sandboxIPs(result, path);
    if (podIPs.length === 0) {
      throw new KubeletError('CNI_RESULT_INVALID', `network "${config.name}" gave the pod no IP address`);
    }
    await deps.store.writeNetwork(spec.uid, { config, attachment, result });
    deps.log.info('pod network ready', { netns: rec.netns, podIPs, network: config.name });
    return { netnsPath: path, podIPs };
  } catch (err) {
    // A DEL must follow a failed ADD; then the namespace goes, and the next attempt starts clean.
    await cniDel(config, attachment, undefined, deps.chain).catch((delErr: unknown) =>
      deps.log.warn('CNI DEL after a failed ADD also failed', { err: delErr }),
    );
    await deps.store.clearNetwork(spec.uid);
    await deleteNetns(rec.netns).catch(() => {});
    throw err;
  }
}

/**
 * Detaches the pod from the network (DEL with the stored ADD result) and removes its namespace.
 * Safe to repeat; throws if a plugin's DEL fails, so that the caller retries.
 */
export async function teardownSandbox(uid: string, deps: SandboxDeps): Promise<void> {
  const rec = await deps.store.readPod(uid);
  if (!rec || rec.netns === null) return;
  const net = await deps.store.readNetwork(uid);
  if (net) {
    await cniDel(net.config, net.attachment, net.result, deps.chain);
    await deps.store.clearNetwork(uid);
    deps.log.info('pod network released', { netns: rec.netns });
  }
  await deleteNetns(rec.netns);
}

async function recordFor(spec: SandboxSpec, store: PodStateStore): Promise<PodRecord> {
  const existing = await store.readPod(spec.uid);
  if (existing) return existing;
  const rec: PodRecord = {
    uid: spec.uid,
    namespace: spec.namespace,
    name: spec.name,
    netns: spec.hostNetwork ? null : spec.netns,
    sandboxId: sandboxId(spec.uid),
    createdAt: new Date().toISOString(),
  };
  // Written before the namespace exists, so that garbage collection always knows what we made.
  await store.writePod(rec);
  return rec;
}
