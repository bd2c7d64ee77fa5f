// The whole chain, as a node runs it: cnitool (libcni, like containerd/CRI-O) executes ptp +
// host-local + weft-cni inside a "node" network namespace for a "pod" network namespace, with
// weft-cni installed and chained by the agent's installer, talking to the agent's real CNI server.
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWeftCniSettings } from '../api/cni.ts';
import type { WeftCniSettings } from '../api/cni.ts';
import { weftCniEntry } from '../agent/cni/conflist.ts';
import { installCniPlugin } from '../agent/cni/install.ts';
import { createCniServer } from '../agent/cni/server.ts';
import { UNINSTALLED_STUB } from '../agent/cni/uninstalled-stub.ts';
import type { CniServer, CniServerLog } from '../agent/cni/server.ts';
import { RecordingEnroller } from '../agent/cni/test-enroller.ts';
import { componentBinDir } from '../playground/config.ts';
import { buildCni } from '../scripts/build-cni.ts';
import { execCapture, execPlugin } from './testing/exec-plugin.ts';
import type { PluginRun } from './testing/exec-plugin.ts';
import { createNetns, ipJson, randomSuffix } from './testing/netns.ts';
import type { Netns } from './testing/netns.ts';

const CNITOOL = process.env.WEFT_CNITOOL ?? join(componentBinDir(), 'cnitool');
if (!existsSync(CNITOOL)) {
  throw new Error(`cnitool not found at ${CNITOOL}: build it with "npm run playground:build" (or set WEFT_CNITOOL)`);
}
const quiet: CniServerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

const { path: exe } = await buildCni();
const suffix = randomSuffix();
const root = await mkdtemp(join(tmpdir(), 'weft-cni-chain-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

const binDir = join(root, 'bin');
const confDir = join(root, 'net.d');
const statusConfDir = join(root, 'net-status.d');
const socketPath = join(root, 'cni.sock');
const logFile = join(root, 'cni.log');
const network = `weft-chain-${suffix}`;
const ptpConf = {
  type: 'ptp',
  ipMasq: false,
  ipam: { type: 'host-local', subnet: '10.77.0.0/24', dataDir: join(root, 'ipam'), routes: [{ dst: '0.0.0.0/0' }] },
};

await mkdir(binDir);
await mkdir(confDir);
await mkdir(statusConfDir);
for (const p of ['ptp', 'host-local']) await symlink(`/usr/lib/cni/${p}`, join(binDir, p));
await writeFile(join(confDir, '10-pods.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: network, plugins: [ptpConf] }, null, 2));

const settings: WeftCniSettings = parseWeftCniSettings({
  agentSocket: socketPath,
  timeoutMs: 2000,
  logFile,
  // Unreachable from the node's namespace (its loopback is down): "the API is unreachable too".
  kubernetes: { apiServer: 'https://127.0.0.1:6443', caFile: join(root, 'api/ca.crt'), tokenFile: join(root, 'api/token') },
});
const installed = await installCniPlugin({
  binarySource: exe,
  binDir,
  confDir,
  settings,
  credentials: { caPem: await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8'), token: 'chain-test-token' },
});
// STATUS and GC are spec 1.1, which Debian's ptp (1.0.0) does not speak: a list of weft-cni alone.
const statusNetwork = `weft-status-${suffix}`;
await writeFile(
  join(statusConfDir, '10-status.conflist'),
  JSON.stringify({ cniVersion: '1.1.0', name: statusNetwork, plugins: [weftCniEntry(settings)] }),
);

const node = await createNetns(t, `wcni-node-${suffix}`);
// libcni caches results per network name; ours is unique to this run.
t.teardown(async () => {
  const dir = '/var/lib/cni/results';
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (f.startsWith(`${network}-`) || f.startsWith(`${statusNetwork}-`)) await unlink(join(dir, f)).catch(() => undefined);
  }
});

interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

function cnitool(op: 'add' | 'check' | 'del' | 'gc' | 'status', pod: Netns, ref: PodRef, netconf = confDir, net = network): Promise<PluginRun> {
  return execCapture('ip', ['netns', 'exec', node.name, CNITOOL, op, net, pod.path], {
    CNI_PATH: binDir,
    NETCONFPATH: netconf,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ref.namespace};K8S_POD_NAME=${ref.name};K8S_POD_UID=${ref.uid}`,
  }, '');
}

async function startAgent(t: { teardown(fn: () => unknown): void }): Promise<{ enroller: RecordingEnroller; server: CniServer }> {
  const enroller = new RecordingEnroller();
  const server = createCniServer({ socketPath, enroller, log: quiet });
  await server.listen();
  t.teardown(() => server.close());
  return { enroller, server };
}

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface IpLink {
  ifname: string;
  address: string;
}

async function podIPv4(pod: Netns): Promise<string | undefined> {
  const addrs = await ipJson<IpAddr[]>(pod.name, ['addr', 'show']);
  return addrs.find((a) => a.ifname === 'eth0')?.addr_info.find((i) => i.family === 'inet')?.local;
}

t.test('the installer chained weft-cni into the primary conflist', async (t) => {
  t.same(installed.chain, { state: 'chained', file: join(confDir, '10-pods.conflist'), changed: true });
  const list = JSON.parse(await readFile(join(confDir, '10-pods.conflist'), 'utf8')) as { plugins: { type: string }[] };
  t.same(list.plugins.map((p) => p.type), ['ptp', 'weft-cni']);
});

t.test('ADD through the chain: the pod gets its ptp address and the agent enrols it', async (t) => {
  const { enroller } = await startAgent(t);
  const pod = await createNetns(t, `wcni-pod-${suffix}-1`);
  const ref = { namespace: 'mesh-shop', name: 'cart-0', uid: '4f1c0a52-0000-4000-8000-000000000001' };

  const add = await cnitool('add', pod, ref);
  t.equal(add.code, 0, add.stderr);
  const result = add.json as { interfaces: { name: string; mac: string; sandbox?: string }[]; ips: { address: string }[] };
  const ip = await podIPv4(pod);
  t.ok(ip?.startsWith('10.77.0.'), `the pod has its ptp address (${ip})`);
  t.equal(result.ips[0]?.address.split('/')[0], ip, 'the chain result reports it');
  const hostVeth = result.interfaces.find((i) => i.sandbox === undefined || i.sandbox === '');
  const nodeLinks = await ipJson<IpLink[]>(node.name, ['link', 'show']);
  t.equal(nodeLinks.find((l) => l.ifname === hostVeth?.name)?.address, hostVeth?.mac, 'and ptp\'s host veth, unchanged');

  t.equal(enroller.calls.length, 1);
  t.match(enroller.calls[0], {
    op: 'enrol',
    req: { pod: ref, containerId: /^cnitool-[0-9a-f]+$/, ifname: 'eth0', netns: pod.path, ips: [ip], hostInterface: hostVeth?.name },
  });

  t.equal((await cnitool('check', pod, ref)).code, 0, 'CHECK passes while the agent has the pod');
  enroller.enrolled.clear();
  const check = await cnitool('check', pod, ref);
  t.not(check.code, 0, 'CHECK fails once the redirection is gone');
  t.match(check.stderr, /Pod redirection is not in place/);

  const del1 = await cnitool('del', pod, ref);
  t.equal(del1.code, 0, del1.stderr);
  t.equal(await podIPv4(pod), undefined, 'ptp removed the pod interface');
  const del2 = await cnitool('del', pod, ref);
  t.equal(del2.code, 0, `DEL twice: ${del2.stderr}`);
  t.match(enroller.calls.filter((c) => c.op === 'release'), [{ req: { pod: ref, netns: pod.path } }, { req: { pod: ref } }]);
});

t.test('ADD prints the real ptp result it was given, unchanged', async (t) => {
  await startAgent(t);
  const pod = await createNetns(t, `wcni-pod-${suffix}-2`);
  const env = { CNI_CONTAINERID: `direct-${suffix}`, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: binDir };
  const ptpConfig = JSON.stringify({ cniVersion: '1.0.0', name: network, ...ptpConf });
  const ptp = await execPlugin(join(binDir, 'ptp'), { ...env, CNI_COMMAND: 'ADD' }, ptpConfig, { netns: node.name });
  t.equal(ptp.code, 0, ptp.stdout);
  t.teardown(() => execPlugin(join(binDir, 'ptp'), { ...env, CNI_COMMAND: 'DEL' }, ptpConfig, { netns: node.name }));

  const weftConfig = JSON.stringify({ cniVersion: '1.0.0', name: network, ...weftCniEntry(settings), prevResult: ptp.json });
  const weft = await execPlugin(
    installed.binary,
    { ...env, CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAMESPACE=mesh-shop;K8S_POD_NAME=cart-1;K8S_POD_UID=u2' },
    weftConfig,
    { netns: node.name },
  );
  t.equal(weft.code, 0, weft.stdout);
  t.same(weft.json, ptp.json, 'weft-cni output equals ptp output');
});

t.test('agent down: a pod outside the excluded namespaces fails with 11; DEL still succeeds', async (t) => {
  const pod = await createNetns(t, `wcni-pod-${suffix}-3`);
  const ref = { namespace: 'mesh-shop', name: 'cart-3', uid: 'u3' };
  const add = await cnitool('add', pod, ref);
  t.not(add.code, 0, 'ADD fails');
  // libcni reports a plugin's error object as "<msg>; <details>".
  t.match(add.stderr, /Try again later; weft agent unavailable \(ENOENT.*\) and the Kubernetes API could not tell/);
  const del = await cnitool('del', pod, ref);
  t.equal(del.code, 0, `the runtime's cleanup DEL succeeds: ${del.stderr}`);
  t.match(await readFile(logFile, 'utf8'), /agent unavailable for DEL/);
});

t.test('agent down: a pod in an excluded namespace starts', async (t) => {
  const pod = await createNetns(t, `wcni-pod-${suffix}-4`);
  const ref = { namespace: 'kube-system', name: 'coredns-0', uid: 'u4' };
  const add = await cnitool('add', pod, ref);
  t.equal(add.code, 0, add.stderr);
  t.ok((await podIPv4(pod))?.startsWith('10.77.0.'), 'it has its address');
  t.equal((await cnitool('del', pod, ref)).code, 0);
});

t.test('STATUS follows the agent; GC through cnitool succeeds', async (t) => {
  const pod = await createNetns(t, `wcni-pod-${suffix}-5`);
  const ref = { namespace: 'default', name: 'x', uid: 'u5' };
  const down = await cnitool('status', pod, ref, statusConfDir, statusNetwork);
  t.not(down.code, 0, 'agent down: not ready');
  t.match(down.stderr, /Plugin not available; weft agent unavailable/);

  const { enroller } = await startAgent(t);
  const up = await cnitool('status', pod, ref, statusConfDir, statusNetwork);
  t.equal(up.code, 0, up.stderr);
  enroller.readiness = { ready: false, reason: 'syncing with the controller' };
  t.match((await cnitool('status', pod, ref, statusConfDir, statusNetwork)).stderr, /not ready: syncing with the controller/);

  // cnitool's GC passes no attachment list; weft-cni then forwards nothing (see netconf.ts).
  const gc = await cnitool('gc', pod, ref, statusConfDir, statusNetwork);
  t.equal(gc.code, 0, gc.stderr);
  t.same(enroller.calls.filter((c) => c.op === 'gc'), []);
});

t.test('after uninstall, a chain that still lists weft-cni starts pods unmeshed: the stub passes ptp\'s result through', async (t) => {
  // What a node is left with if an entry survives the uninstall: ptp + weft-cni, and the stub.
  const staleBin = join(root, 'bin-uninstalled');
  const staleConf = join(root, 'net-uninstalled.d');
  const staleNetwork = `weft-stale-${suffix}`;
  await mkdir(staleBin);
  await mkdir(staleConf);
  for (const p of ['ptp', 'host-local']) await symlink(`/usr/lib/cni/${p}`, join(staleBin, p));
  await writeFile(join(staleBin, 'weft-cni'), UNINSTALLED_STUB, { mode: 0o755 });
  const ptpStale = { ...ptpConf, ipam: { ...ptpConf.ipam, subnet: '10.78.0.0/24', dataDir: join(root, 'ipam-stale') } };
  await writeFile(join(staleConf, '10-pods.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: staleNetwork, plugins: [ptpStale, weftCniEntry(settings)] }));
  t.teardown(async () => {
    for (const f of await readdir('/var/lib/cni/results').catch(() => [] as string[])) {
      if (f.startsWith(`${staleNetwork}-`)) await unlink(join('/var/lib/cni/results', f)).catch(() => undefined);
    }
  });
  const pod = await createNetns(t, `wcni-pod-${suffix}-6`);
  const run = (op: 'add' | 'check' | 'del') =>
    execCapture('ip', ['netns', 'exec', node.name, CNITOOL, op, staleNetwork, pod.path], {
      CNI_PATH: staleBin,
      NETCONFPATH: staleConf,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=mesh-shop;K8S_POD_NAME=late-0;K8S_POD_UID=u6',
    }, '');

  const add = await run('add');
  t.equal(add.code, 0, `ADD through ptp + the stub succeeds (no agent anywhere): ${add.stderr}`);
  const ip = await podIPv4(pod);
  t.ok(ip?.startsWith('10.78.0.'), `the pod has its ptp address (${ip})`);
  const result = add.json as { cniVersion: string; ips: { address: string }[]; interfaces: { name: string; sandbox?: string }[] };
  t.equal(result.cniVersion, '1.0.0', "the chain's result is in the configuration's version");
  t.equal(result.ips[0]?.address.split('/')[0], ip, "and is ptp's: the pod's address");
  t.ok(result.interfaces.some((i) => i.name === 'eth0' && i.sandbox === pod.path), 'with its interface in the pod');
  const check = await run('check');
  t.equal(check.code, 0, `CHECK succeeds: ${check.stderr}`);
  const del = await run('del');
  t.equal(del.code, 0, `DEL succeeds: ${del.stderr}`);
  t.equal(await podIPv4(pod), undefined, 'ptp removed the pod interface');
});
