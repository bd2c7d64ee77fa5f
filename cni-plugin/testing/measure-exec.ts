// Measures what weft-cni costs a pod start: wall time of VERSION (pure process start-up) and of
// ADD against a live agent socket, each run as a runtime runs it (spawn, env, stdin, wait), next
// to references measured the same way in the same run: /bin/true (the spawn floor), a Go CNI
// plugin (Debian's ptp, VERSION) and a bare `node -e 0`.
//
//   node cni-plugin/testing/measure-exec.ts [runs=200]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWeftCniSettings } from '../../api/cni.ts';
import { weftCniEntry } from '../../agent/cni/conflist.ts';
import { createCniServer } from '../../agent/cni/server.ts';
import { RecordingEnroller } from '../../agent/cni/test-enroller.ts';
import { buildCni } from '../../scripts/build-cni.ts';
import { execCapture } from './exec-plugin.ts';

const runs = Number(process.argv[2] ?? 200);

interface Stats {
  p50: number;
  p99: number;
  mean: number;
}

async function measure(label: string, cmd: string, env: Record<string, string>, stdin: string, args: string[] = []): Promise<Stats> {
  for (let i = 0; i < 5; i++) await execCapture(cmd, args, env, stdin); // warm the page cache
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await execCapture(cmd, args, env, stdin);
    if (r.code !== 0) throw new Error(`${label}: exit ${r.code}: ${r.stdout}${r.stderr}`);
    ms.push(r.ms);
  }
  ms.sort((a, b) => a - b);
  const at = (q: number): number => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN;
  const stats = { p50: at(0.5), p99: at(0.99), mean: ms.reduce((a, b) => a + b, 0) / ms.length };
  console.log(`${label.padEnd(38)} p50 ${stats.p50.toFixed(1).padStart(6)} ms   p99 ${stats.p99.toFixed(1).padStart(6)} ms   mean ${stats.mean.toFixed(1).padStart(6)} ms`);
  return stats;
}

const built = await buildCni();
console.log(`weft-cni: ${built.path}, ${(built.sizeBytes / 1e6).toFixed(1)} MB, ${runs} runs each`);

const dir = await mkdtemp(join(tmpdir(), 'weft-cni-measure-'));
const socketPath = join(dir, 'cni.sock');
const server = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: { info: () => undefined, warn: () => undefined, error: () => undefined } });
await server.listen();
try {
  const version = JSON.stringify({ cniVersion: '1.1.0' });
  await measure('/bin/true (spawn floor)', '/bin/true', {}, '');
  await measure('ptp VERSION (Go plugin)', '/usr/lib/cni/ptp', { CNI_COMMAND: 'VERSION' }, version);
  await measure('node -e 0 (pinned Node)', process.execPath, {}, '', ['-e', '0']);
  await measure('weft-cni VERSION', built.path, { CNI_COMMAND: 'VERSION' }, version);

  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'veth5f3a', mac: '5e:12:34:56:78:9a' }, { name: 'eth0', mac: '0a:58:0a:01:00:05', sandbox: '/run/netns/p1' }],
    ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }],
  };
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'bench', ...weftCniEntry(parseWeftCniSettings({ agentSocket: socketPath })), prevResult });
  const addEnv = {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'bench',
    CNI_NETNS: '/run/netns/p1',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'K8S_POD_NAMESPACE=mesh-bench;K8S_POD_NAME=p;K8S_POD_UID=u',
  };
  await measure('weft-cni ADD (live agent, enrolled)', built.path, addEnv, conf);
  await measure('weft-cni ADD (live agent, not meshed)', built.path, { ...addEnv, CNI_ARGS: 'K8S_POD_NAMESPACE=plain;K8S_POD_NAME=p' }, conf);
} finally {
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
