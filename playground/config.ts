// The playground's address plan and file layout, derived from its name and slot. Every other part
// of the playground (network setup, control plane, simulated kubelets, the CLI) reads these values
// from here, so that two playgrounds with different names never share an address, a port, a
// network namespace or a directory.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Root of all runtime state: tmpfs, so that it vanishes with the namespaces it describes. */
export const RUN_ROOT = process.env.WEFT_PLAYGROUND_ROOT ?? '/run/weft-playground';

/** At most this many playgrounds run side by side; each owns the /16 10.(200+slot).0.0. */
export const MAX_SLOTS = 16;

/** Name rules: it ends up in interface names (15 bytes max) and netns names. */
export const NAME_PATTERN = /^[a-z][a-z0-9]{0,7}$/;

export interface NodePlan {
  /** Kubernetes Node name. */
  name: string;
  /** 1-based index. */
  index: number;
  /** Network namespace that plays the node's host network. */
  netns: string;
  /** The node's address on the playground fabric (its InternalIP). */
  ip: string;
  /** The node's pod CIDR (Node.spec.podCIDR), a /24. */
  podCIDR: string;
  /** Per-node directory: CNI config and binaries (the node's "host paths"), logs, kubelet state. */
  dir: string;
  /**
   * The node's "/": its host paths (the CNI directories below, the chart's hostPath volumes) are
   * under it, at their usual paths.
   */
  hostRoot: string;
  cniConfDir: string;
  cniBinDir: string;
}

export interface PlaygroundPlan {
  name: string;
  slot: number;
  dir: string;
  /** The root network namespace's address on the fabric: API server, controller, etcd peers. */
  hostIP: string;
  fabricCIDR: string;
  clusterCIDR: string;
  serviceCIDR: string;
  /** First address of the service range: the `kubernetes` Service. */
  apiServiceIP: string;
  apiServerPort: number;
  etcdClientPort: number;
  etcdPeerPort: number;
  /** Network namespace holding the fabric bridge, so that no bridge sits in the root namespace. */
  fabricNetns: string;
  /** Root-namespace end of the veth into the fabric. */
  hostLink: string;
  nodes: NodePlan[];
  paths: {
    pki: string;
    etcdData: string;
    logs: string;
    adminKubeconfig: string;
    stateFile: string;
    cniPluginDir: string;
  };
  binDir: string;
  k8sVersion: string;
}

export function readVersions(): Record<string, string> {
  const text = readFileSync(new URL('./build/versions.env', import.meta.url), 'utf8');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(\S+)/.exec(line);
    if (m?.[1] && m[2]) out[m[1]] = m[2];
  }
  return out;
}

let binDirForPins: string | undefined;

/**
 * Where the components built from the committed pins live. build-components.sh owns the cache
 * key (a hash of go.mod, go.sum and what it builds), so that a changed pin is a new directory and
 * a stale build is never used; this asks it once per process.
 */
export function componentBinDir(): string {
  if (binDirForPins) return binDirForPins;
  const script = fileURLToPath(new URL('./build/build-components.sh', import.meta.url));
  const r = spawnSync('bash', [script, '--print-bin-dir'], { encoding: 'utf8' });
  const dir = r.stdout.trim();
  if (r.status !== 0 || !dir) throw new Error(`${script} --print-bin-dir failed: ${r.stderr.trim()}`);
  binDirForPins = dir;
  return dir;
}

export function planPlayground(name: string, slot: number, nodeCount: number): PlaygroundPlan {
  if (!NAME_PATTERN.test(name)) {
    throw new Error(`playground name "${name}" must match ${NAME_PATTERN} (it is used in interface names)`);
  }
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_SLOTS) throw new Error(`slot ${slot} out of range`);
  if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 50) {
    throw new Error(`node count ${nodeCount} must be between 1 and 50`);
  }
  const o = 200 + slot;
  const dir = join(RUN_ROOT, name);
  const nodes: NodePlan[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const nodeName = `node-${i}`;
    const nodeDir = join(dir, 'nodes', nodeName);
    nodes.push({
      name: nodeName,
      index: i,
      netns: `wpg-${name}-${nodeName}`,
      ip: `10.${o}.0.${10 + i}`,
      podCIDR: `10.${o}.${128 + i}.0/24`,
      dir: nodeDir,
      hostRoot: join(nodeDir, 'root'),
      cniConfDir: join(nodeDir, 'root', 'etc', 'cni', 'net.d'),
      cniBinDir: join(nodeDir, 'root', 'opt', 'cni', 'bin'),
    });
  }
  return {
    name,
    slot,
    dir,
    hostIP: `10.${o}.0.1`,
    fabricCIDR: `10.${o}.0.0/24`,
    clusterCIDR: `10.${o}.128.0/17`,
    serviceCIDR: `10.${o}.96.0/20`,
    apiServiceIP: `10.${o}.96.1`,
    apiServerPort: 6443,
    etcdClientPort: 22379 + slot * 2,
    etcdPeerPort: 22380 + slot * 2,
    fabricNetns: `wpg-${name}-fabric`,
    hostLink: `wpg-${name}`,
    nodes,
    paths: {
      pki: join(dir, 'pki'),
      etcdData: join(dir, 'etcd'),
      logs: join(dir, 'logs'),
      adminKubeconfig: join(dir, 'kubeconfig'),
      stateFile: join(dir, 'state.json'),
      cniPluginDir: '/usr/lib/cni',
    },
    binDir: componentBinDir(),
    k8sVersion: readVersions().K8S_VERSION ?? 'unknown',
  };
}

/** Network namespace name for a pod; the UID keeps it unique across playgrounds and restarts. */
export function podNetnsName(playground: string, podUID: string): string {
  return `wpg-${playground}-pod-${podUID.replaceAll('-', '').slice(0, 12)}`;
}

/** What the supervisor hands a simulated kubelet (as a JSON file given as its only argument). */
export interface KubeletConfig {
  playground: string;
  node: NodePlan;
  /** Kubeconfig with the node's client certificate (CN system:node:<name>, O system:nodes). */
  kubeconfig: string;
  /** The API server's address as the node reaches it (the host's fabric IP). */
  hostIP: string;
  clusterCIDR: string;
  serviceCIDR: string;
}
