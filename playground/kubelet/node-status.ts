// What this node says about itself: the Node object it registers and the status it reports
// (addresses, capacity, system info, conditions), built as plain data from the kubelet's config and
// the machine it runs on.
import { createHash } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';
import type { V1Node, V1NodeCondition } from '@kubernetes/client-node';
import type { KubeletConfig } from '../config.ts';
import { apiTime } from './pod-status.ts';

/** The simulated container runtime, as it appears in `kubectl get nodes -o wide`. */
export const RUNTIME_VERSION = 'weft-playground://0.1.0';

/** Pods a node accepts: the kubelet's default --max-pods. */
export const MAX_PODS = 110;

export interface NodeIdentity {
  name: string;
  ip: string;
  podCIDR: string;
  kubeletVersion: string;
  machineID: string;
  systemUUID: string;
  bootID: string;
  kernelVersion: string;
  osImage: string;
  architecture: string;
  capacity: Record<string, string>;
}

/** The node's identity; machine and system IDs are derived per simulated node, so they differ. */
export function nodeIdentity(cfg: KubeletConfig, kubeletVersion: string): NodeIdentity {
  const digest = createHash('sha256').update(`weft-playground/${cfg.playground}/${cfg.node.name}`).digest('hex');
  const uuid = `${digest.slice(0, 8)}-${digest.slice(8, 12)}-${digest.slice(12, 16)}-${digest.slice(16, 20)}-${digest.slice(20, 32)}`;
  return {
    name: cfg.node.name,
    ip: cfg.node.ip,
    podCIDR: cfg.node.podCIDR,
    kubeletVersion,
    machineID: digest.slice(0, 32),
    systemUUID: uuid,
    bootID: readText('/proc/sys/kernel/random/boot_id') ?? '',
    kernelVersion: release(),
    osImage: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readText('/etc/os-release') ?? '')?.[1] ?? 'Linux',
    architecture: goArch(process.arch),
    capacity: capacity(cfg.node.dir),
  };
}

export function nodeLabels(id: NodeIdentity): Record<string, string> {
  return {
    'kubernetes.io/hostname': id.name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': id.architecture,
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': id.architecture,
  };
}

/** The Node as the kubelet registers it. */
export function nodeObject(id: NodeIdentity): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: id.name,
      labels: nodeLabels(id),
      annotations: { 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
    },
    spec: { podCIDR: id.podCIDR, podCIDRs: [id.podCIDR] },
  };
}

export interface RuntimeHealth {
  /** The pod network is configured (a CNI configuration exists), as the runtime reports it. */
  networkReady: boolean;
  networkMessage?: string;
}

/** The status subresource patch: conditions keep their transition time while unchanged. */
export function nodeStatusPatch(id: NodeIdentity, health: RuntimeHealth, previous: V1NodeCondition[], now: Date): { status: Record<string, unknown> } {
  const before = new Map(previous.map((c) => [c.type, c]));
  const cond = (type: string, status: 'True' | 'False', reason: string, message: string): Record<string, string> => {
    const prev = before.get(type);
    return {
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: apiTime(now),
      lastTransitionTime: prev?.status === status && prev.lastTransitionTime ? apiTime(prev.lastTransitionTime) : apiTime(now),
    };
  };
  const ready = health.networkReady
    ? cond('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status')
    : cond(
        'Ready',
        'False',
        'KubeletNotReady',
        `container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: ${health.networkMessage ?? 'cni plugin not initialized'}`,
      );
  return {
    status: {
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        ready,
      ],
      addresses: [
        { type: 'InternalIP', address: id.ip },
        { type: 'Hostname', address: id.name },
      ],
      capacity: id.capacity,
      allocatable: id.capacity,
      nodeInfo: {
        machineID: id.machineID,
        systemUUID: id.systemUUID,
        bootID: id.bootID,
        kernelVersion: id.kernelVersion,
        osImage: id.osImage,
        containerRuntimeVersion: RUNTIME_VERSION,
        kubeletVersion: id.kubeletVersion,
        operatingSystem: 'linux',
        architecture: id.architecture,
      },
    },
  };
}

function capacity(dir: string): Record<string, string> {
  const cap: Record<string, string> = {
    cpu: String(availableParallelism()),
    memory: `${Math.floor(totalmem() / 1024)}Ki`,
    pods: String(MAX_PODS),
  };
  try {
    const fs = statfsSync(dir);
    cap['ephemeral-storage'] = `${Math.floor((fs.blocks * fs.bsize) / 1024)}Ki`;
  } catch {
    /* the directory may not exist yet; the resource is optional */
  }
  return cap;
}

function goArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}
