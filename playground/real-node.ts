// A real playground node: the kubelet and containerd (with Debian's runc) run in the node's
// network namespace and in a mount namespace of its own, and run pods from locally built images.
// Each node gets the paths a node's components hard-code to itself — /run/netns, /run/containerd,
// the chart's hostPaths (/opt/cni/bin, /etc/cni/net.d, /var/run/weft), /var/log, /var/lib/cni —
// by mounts in that namespace, so that two nodes on one machine never see each other's files and
// nothing a node mounts reaches the host. What these machines demand and why (cgroup v1, no
// CAP_SYS_RESOURCE, no registry) is in playground/README.md, "Real nodes".
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodePlan, PlaygroundPlan } from './config.ts';
import { run } from './exec.ts';
import { waitFor } from './controlplane.ts';
import type { Supervisor } from './supervisor.ts';

/** containerd's pinned sandbox image: kubelet 1.36 has no flag for it, the tag must match. */
export const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10';
/** Where Debian's runc is (scripts/install-system-deps.sh installs it). */
export const RUNC = '/usr/sbin/runc';

/** Per-node mounts: a private tmpfs (state that must not be shared) or a bind of a node directory. */
interface NodeMount {
  target: string;
  /** Directory under the node's dir to bind; absent for a tmpfs. */
  source?: string;
}

export function nodeMounts(n: NodePlan): NodeMount[] {
  return [
    { target: '/run/netns' },
    { target: '/run/containerd' },
    { target: '/run/weft' },
    { target: '/var/log', source: join(n.dir, 'var-log') },
    { target: '/var/lib/cni', source: join(n.dir, 'var-lib-cni') },
    { target: '/etc/cni/net.d', source: n.cniConfDir },
    { target: '/opt/cni/bin', source: n.cniBinDir },
  ];
}

/** The cgroup parent of everything the node's kubelet starts, in every hierarchy. */
export function cgroupRoot(p: Pick<PlaygroundPlan, 'name'>, n: Pick<NodePlan, 'name'>): string {
  return `weft-${p.name}-${n.name}`;
}

const CGROUP_FS = '/sys/fs/cgroup';

async function hierarchies(): Promise<string[]> {
  const entries = await readdir(CGROUP_FS).catch(() => [] as string[]);
  return entries.filter((e) => existsSync(join(CGROUP_FS, e, 'cgroup.procs')));
}

function containerdSocket(n: NodePlan): string {
  return join(n.dir, 'containerd', 'containerd.sock');
}

function containerdConfig(n: NodePlan): string {
  const d = join(n.dir, 'containerd');
  return `version = 3
root = "${d}/root"
state = "${d}/state"
# Snapshotters these machines cannot run are compiled out (build tags) or disabled here.
disabled_plugins = ["io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile"]
[grpc]
  address = "${containerdSocket(n)}"
[ttrpc]
  address = "${containerdSocket(n)}.ttrpc"
[debug]
  address = "${d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${SANDBOX_IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's
  # oom_score_adj and fails every pod ("can't get final child's PID from pipe") unless told not to.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "${RUNC}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    # The node's own view (bind mounts): Debian's reference plugins, and weft-cni once installed.
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

export interface RealKubeletFiles {
  ca: string;
  kubeconfig: string;
  clusterDNS?: string;
}

function kubeletConfig(p: PlaygroundPlan, n: NodePlan, f: RealKubeletFiles): object {
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // These machines have cgroup v1 and no systemd.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: `/${cgroupRoot(p, n)}`,
    containerRuntimeEndpoint: `unix://${containerdSocket(n)}`,
    address: n.ip,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    // The API server (logs, exec, port-forward) presents a client certificate of the cluster CA,
    // and the kubelet asks the API server whether that user may.
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: f.ca } },
    authorization: { mode: 'Webhook' },
    resolvConf: join(n.dir, 'resolv.conf'),
    ...(f.clusterDNS ? { clusterDNS: [f.clusterDNS], clusterDomain: 'cluster.local' } : {}),
    failSwapOn: false,
    maxPods: 40,
    // The machine's disk and memory are shared by every node on it: eviction would react to the
    // others' use, so only a nearly full machine evicts.
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // Images are imported, never pulled: garbage-collecting one would lose it.
    imageMinimumGCAge: '87600h',
    serializeImagePulls: false,
    rotateCertificates: false,
    serverTLSBootstrap: false,
    shutdownGracePeriod: '0s',
  };
}

/** The pid of the process holding the node's mount namespace, once the supervisor has it. */
function holderPid(sup: Supervisor, n: NodePlan): number | undefined {
  return sup.pids()[`node/${n.name}`];
}

/**
 * Starts the node: namespace holder, mounts, cgroups, containerd, the images, then the kubelet.
 * Resolves once containerd answers and the images are in; the kubelet registers on its own.
 */
export async function startRealNode(p: PlaygroundPlan, n: NodePlan, f: RealKubeletFiles, images: string[], sup: Supervisor): Promise<void> {
  const mounts = nodeMounts(n);
  for (const m of mounts) {
    // Mount points must exist on the host; they stay there, empty (other playgrounds share them).
    await mkdir(m.target, { recursive: true });
    if (m.source) await mkdir(m.source, { recursive: true });
  }
  for (const d of ['containerd/root', 'containerd/state', 'containerd/opt', 'kubelet']) await mkdir(join(n.dir, d), { recursive: true });
  await writeFile(join(n.dir, 'resolv.conf'), '');
  await writeFile(join(n.dir, 'containerd.toml'), containerdConfig(n));
  await writeFile(join(n.dir, 'kubelet.yaml'), JSON.stringify(kubeletConfig(p, n, f), null, 2));

  const root = cgroupRoot(p, n);
  for (const h of await hierarchies()) await mkdir(join(CGROUP_FS, h, root), { recursive: true });
  if (existsSync(join(CGROUP_FS, 'cpuset', root))) {
    // A new cpuset cgroup starts with no CPUs and no memory nodes: nothing could run in it.
    for (const k of ['cpuset.cpus', 'cpuset.mems']) await writeFile(join(CGROUP_FS, 'cpuset', root, k), await readFile(join(CGROUP_FS, 'cpuset', k), 'utf8'));
  }

  // The holder: a process whose only job is to keep the node's mount namespace alive. Mounts made
  // in it are private (no propagation either way).
  sup.start({ name: `node/${n.name}`, netns: n.netns, cmd: 'unshare', args: ['--mount', '--propagation', 'private', '--', 'sleep', 'infinity'], logFile: join(n.dir, 'holder.log') });
  let pid = 0;
  await waitFor(`the mount namespace of ${n.name}`, 10_000, async () => {
    pid = holderPid(sup, n) ?? 0;
    if (!pid) return 'not started';
    const [own, holder] = await Promise.all([readLink('/proc/self/ns/mnt'), readLink(`/proc/${pid}/ns/mnt`)]);
    return (holder !== '' && holder !== own) || 'not unshared yet';
  });
  const script = mounts
    .map((m) => (m.source ? `mount --bind '${m.source}' '${m.target}'` : `mount -t tmpfs -o mode=0755 tmpfs '${m.target}'`))
    .join(' && ');
  await run('nsenter', ['-t', String(pid), '-m', '--', 'sh', '-c', script]);

  // `ip netns exec` would remount /sys and hide the cgroup hierarchies: nsenter joins as is. The
  // shim containerd starts is found on PATH, so the pinned build's directory comes first.
  const inNode = (bin: string) => ({ cmd: 'nsenter', args: ['-t', String(pid), '-m', '-n', '--', bin] });
  const env = { ...process.env, PATH: `${p.binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  const ctrd = inNode(join(p.binDir, 'containerd'));
  sup.start({ name: `containerd/${n.name}`, cmd: ctrd.cmd, args: [...ctrd.args, '--config', join(n.dir, 'containerd.toml')], env, logFile: join(n.dir, 'containerd.log') });
  await waitFor(`containerd on ${n.name}`, 30_000, async () => {
    await run(join(p.binDir, 'ctr'), ['--address', containerdSocket(n), 'version'], { timeoutMs: 3000 });
    return true;
  });
  for (const tarball of images) {
    await run(join(p.binDir, 'ctr'), ['--address', containerdSocket(n), '-n', 'k8s.io', 'images', 'import', '--local', tarball], { timeoutMs: 120_000 });
  }

  const kubelet = inNode(join(p.binDir, 'kubelet'));
  sup.start({
    name: `kubelet/${n.name}`,
    cmd: kubelet.cmd,
    args: [
      ...kubelet.args,
      `--config=${join(n.dir, 'kubelet.yaml')}`,
      `--kubeconfig=${f.kubeconfig}`,
      `--root-dir=${join(n.dir, 'kubelet')}`,
      `--hostname-override=${n.name}`,
      `--node-ip=${n.ip}`,
      '--v=1',
    ],
    env,
    logFile: join(n.dir, 'kubelet.log'),
  });
}

async function readLink(path: string): Promise<string> {
  return readlink(path).catch(() => '');
}

/** Processes whose command line names this node's containerd socket: its shims. */
async function shimPids(n: NodePlan): Promise<number[]> {
  const sock = containerdSocket(n);
  const out: number[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const cmdline = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('containerd-shim') && cmdline.includes(sock)) out.push(Number(e));
  }
  return out;
}

async function cgroupTasks(dir: string): Promise<number[]> {
  const out: number[] = [];
  const walk = async (d: string): Promise<void> => {
    const procs = await readFile(join(d, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const l of procs.split('\n')) if (/^\d+$/.test(l)) out.push(Number(l));
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) await walk(join(d, e.name));
  };
  await walk(dir);
  return out;
}

async function removeTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) await removeTree(join(dir, e.name));
  await rmdir(dir).catch(() => {});
}

/**
 * Removes what a real node leaves once its kubelet, containerd and holder are stopped (or died):
 * container processes (in the node's cgroups), shims, and the cgroups. The mounts go with the
 * mount namespace when its last process exits. Safe to run again.
 */
export async function cleanRealNode(p: Pick<PlaygroundPlan, 'name'>, n: NodePlan): Promise<void> {
  const root = cgroupRoot(p, n);
  const hs = await hierarchies();
  for (let round = 0; round < 3; round++) {
    const pids = new Set<number>(await shimPids(n));
    for (const h of hs) for (const pid of await cgroupTasks(join(CGROUP_FS, h, root))) pids.add(pid);
    if (pids.size === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const h of hs) await removeTree(join(CGROUP_FS, h, root));
}

/** Removes every (empty) cgroup a playground's real nodes made, found by name; returns those left. */
export async function removeCgroups(name: string): Promise<string[]> {
  for (const dir of await leftoverCgroups(name)) await removeTree(dir);
  return leftoverCgroups(name);
}

/** Every cgroup a playground's real nodes made, found by name (for `down` after a crash). */
export async function leftoverCgroups(name: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of await hierarchies()) {
    for (const e of await readdir(join(CGROUP_FS, h)).catch(() => [] as string[])) if (e.startsWith(`weft-${name}-`)) out.push(join(CGROUP_FS, h, e));
  }
  return out;
}

/**
 * Gives the Node its pod CIDR, as a cluster's node IPAM would: the CNI configuration and the
 * fabric's routes use the plan's /24, and kube-proxy (detectLocalMode NodeCIDR) waits for it.
 * The kubelet cannot set it itself; the controller-manager would choose another range.
 */
export async function assignPodCIDR(p: PlaygroundPlan, n: NodePlan): Promise<void> {
  const kubectl = (args: string[]) => run(join(p.binDir, 'kubectl'), [`--kubeconfig=${p.paths.adminKubeconfig}`, ...args]);
  await waitFor(`the Node ${n.name} to register`, 60_000, async () => {
    await kubectl(['get', 'node', n.name, '-o', 'name']);
    return true;
  });
  const current = await kubectl(['get', 'node', n.name, '-o', 'jsonpath={.spec.podCIDR}']);
  if (current === n.podCIDR) return;
  if (current) throw new Error(`node ${n.name} has pod CIDR ${current}, not the planned ${n.podCIDR}`);
  await kubectl(['patch', 'node', n.name, '--type=merge', '-p', JSON.stringify({ spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] } })]);
}
