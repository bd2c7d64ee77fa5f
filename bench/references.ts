// Same-run references for `npm run bench`, started in the playground's pod network namespaces:
//
//   ztunnel  Istio's data plane built from source (bench/ztunnel/README.md), in dedicated mode:
//            one instance per pod, one worker thread, FAKE_CA, workloads from a local file. The
//            client pod's outbound TCP to the server pods is redirected to its ztunnel by an
//            nftables table in that pod's namespace; the server pods' ztunnels take HBONE on 15008.
//   stunnel  a TLS 1.3 client in the client pod and a server in the server pod: what TLS alone
//            costs per byte, with no HTTP/2 and no mesh logic.
//   Node TLS the same relay written in Node (bench/node-tls-relay.ts): what TLS alone costs per byte
//            and in memory once the bytes go through Node's TLS and streams.
//
// Every process is a child of the bench, started with nsenter into the pod's network namespace,
// so its pid is the proxy's own (nsenter execs it) and /proc/<pid>/stat gives its CPU and RSS.
// stop() kills them and deletes the nftables table; it is safe to call more than once and after a
// failed start.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkloadCertificate } from '../agent/identity/certificate.ts';

export interface PodRef {
  namespace: string;
  name: string;
  node: string;
  netns: string;
  ip: string;
}

export interface ProcSample {
  cpuSeconds: number;
  rssMB: number;
  /** The anonymous part of the RSS: the process's own memory, not pages of its executable and libraries. */
  anonMB: number;
}

export async function sample(pid: number): Promise<ProcSample> {
  // Fields after the command name; utime and stime are the 14th and 15th of the whole line and
  // include the process's exited threads.
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kB = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]) / 1024;
  return { cpuSeconds: ticks / 100, rssMB: kB('VmRSS'), anonMB: kB('RssAnon') };
}

/** CPU summed over the processes, RSS per process (so that each end can be judged alone). */
export async function sampleAll(pids: number[]): Promise<{ cpuSeconds: number; rssMB: number[]; anonMB: number[] }> {
  const s = await Promise.all(pids.map(sample));
  return { cpuSeconds: s.reduce((a, b) => a + b.cpuSeconds, 0), rssMB: s.map((x) => x.rssMB), anonMB: s.map((x) => x.anonMB) };
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

const inNetns = (netns: string, cmd: string[]): string[] => [`--net=/run/netns/${netns}`, '--', ...cmd];

/** A long-running child in a pod's netns, its output in a log file (a pipe could stall it). */
class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  readonly log: string;
  exited: string | undefined;

  private constructor(name: string, proc: ChildProcess, log: string) {
    this.name = name;
    this.proc = proc;
    this.log = log;
    proc.on('exit', (code, signal) => (this.exited = `exited with ${signal ?? code}`));
  }

  static async start(name: string, netns: string, cmd: string[], env: Record<string, string>, log: string): Promise<Child> {
    const out = await open(log, 'w');
    try {
      const proc = spawn('nsenter', inNetns(netns, cmd), { env: { ...process.env, ...env }, stdio: ['ignore', out.fd, out.fd] });
      const child = new Child(name, proc, log);
      await Promise.race([once(proc, 'spawn'), once(proc, 'error').then(([e]) => Promise.reject(e as Error))]);
      return child;
    } finally {
      await out.close();
    }
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  async stop(): Promise<void> {
    if (this.exited !== undefined || this.proc.exitCode !== null) return;
    const gone = once(this.proc, 'exit');
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

async function tail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Waits for ztunnel's readiness endpoint (all its listeners bound, its certificates in hand). */
async function waitReady(ip: string, child: Child, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exited !== undefined) throw new Error(`${child.name} ${child.exited}:\n${await tail(child.log)}`);
    const r = await fetch(`http://${ip}:15021/healthz/ready`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
    if (r?.status === 200) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name} was not ready within ${timeoutMs} ms:\n${await tail(child.log)}`);
}

/** Waits until something accepts TCP on ip:port from the bench's own namespace. */
async function waitForPort(ip: string, port: number, child: Child, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exited !== undefined) throw new Error(`${child.name} ${child.exited}:\n${await tail(child.log)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: ip, port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name} did not listen on ${ip}:${port} within ${timeoutMs} ms:\n${await tail(child.log)}`);
}

export const ZTUNNEL_OUTBOUND_PORT = 15001;
export const HBONE_PORT = 15008;
const ZTUNNEL_MARK = 1337;

export interface ZtunnelOptions {
  bin: string;
  /** The pod whose outbound TCP goes through its ztunnel. */
  client: PodRef;
  /** Pods that get a ztunnel each, answering HBONE on 15008. */
  servers: PodRef[];
  /** Further HBONE workloads ztunnel should know (the interop check's Weft server). */
  otherWorkloads?: PodRef[];
}

const serviceAccount = (p: PodRef) => p.name;
export const spiffeId = (p: PodRef) => `spiffe://cluster.local/ns/${p.namespace}/sa/${serviceAccount(p)}`;

export class Ztunnels {
  readonly dir: string;
  readonly #children: Child[] = [];
  readonly #byPod = new Map<string, Child>();
  #table: { netns: string; name: string } | undefined;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Starts one ztunnel per pod and the client pod's redirect; on failure, undoes what it did. */
  static async start(o: ZtunnelOptions): Promise<Ztunnels> {
    const z = new Ztunnels(await mkdtemp(join(tmpdir(), 'weft-bench-ztunnel-')));
    try {
      await z.#start(o);
      return z;
    } catch (err) {
      await z.stop().catch((e: Error) => console.error(`[bench] ${e.message}`));
      throw err;
    }
  }

  async #start(o: ZtunnelOptions): Promise<void> {
    const pods = [o.client, ...o.servers];
    const workloads = [...pods, ...(o.otherWorkloads ?? [])].map((p) => ({
      uid: `bench//v1/Pod/${p.namespace}/${p.name}`,
      name: p.name,
      namespace: p.namespace,
      trustDomain: 'cluster.local',
      serviceAccount: serviceAccount(p),
      workloadIps: [p.ip],
      protocol: 'HBONE',
      node: p.node,
      network: '',
      services: {},
    }));
    // JSON is YAML, which is what LOCAL_XDS_PATH reads.
    const xds = join(this.dir, 'local-xds.yaml');
    await writeFile(xds, JSON.stringify({ workloads }, null, 2));
    for (const p of pods) {
      const child = await Child.start(`ztunnel in ${p.namespace}/${p.name}`, p.netns, [o.bin], {
        PROXY_MODE: 'dedicated',
        PROXY_WORKLOAD_INFO: `${p.namespace}/${p.name}/${serviceAccount(p)}`,
        ZTUNNEL_WORKER_THREADS: '1',
        FAKE_CA: 'true',
        XDS_ADDRESS: '',
        LOCAL_XDS_PATH: xds,
        NODE_NAME: p.node,
        // Its own connections carry this mark, so the redirect below lets them pass.
        PACKET_MARK: String(ZTUNNEL_MARK),
        // Dedicated mode dials the destination from the pod's own address.
        ENABLE_ORIG_SRC: 'false',
      }, join(this.dir, `${p.name}.log`));
      this.#children.push(child);
      this.#byPod.set(p.name, child);
    }
    for (const p of pods) await waitReady(p.ip, this.#byPod.get(p.name) as Child);

    // Only TCP to the known HBONE workloads, and never ztunnel's own (marked) connections or
    // HBONE itself, so nothing can loop back into the outbound port.
    const name = `weft_bench_zt_${process.pid}`;
    const daddrs = [...o.servers, ...(o.otherWorkloads ?? [])].map((p) => p.ip).join(', ');
    await run('nsenter', inNetns(o.client.netns, ['nft', '-f', '-']), [
      `table ip ${name} {`,
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      `    meta mark ${ZTUNNEL_MARK} return`,
      `    ip daddr { ${daddrs} } tcp dport != ${HBONE_PORT} redirect to :${ZTUNNEL_OUTBOUND_PORT}`,
      '  }',
      '}',
      '',
    ].join('\n'));
    this.#table = { netns: o.client.netns, name };
  }

  pids(): number[] {
    return this.#children.map((c) => c.pid);
  }

  pidOf(pod: string): number {
    return this.#byPod.get(pod)?.pid ?? -1;
  }

  /** Throws, with the end of its log, if a ztunnel has exited. */
  async check(): Promise<void> {
    for (const c of this.#children) if (c.exited !== undefined) throw new Error(`${c.name} ${c.exited}:\n${await tail(c.log)}`);
  }

  async stop(): Promise<void> {
    const errors: string[] = [];
    if (this.#table) {
      const { netns, name } = this.#table;
      this.#table = undefined;
      await run('nsenter', inNetns(netns, ['nft', 'delete', 'table', 'ip', name])).catch((e: Error) => errors.push(e.message));
    }
    await Promise.all(this.#children.map((c) => c.stop()));
    if (!process.env.BENCH_KEEP) await rm(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`ztunnel cleanup: ${errors.join('; ')}`);
  }
}

export const STUNNEL_CLIENT_PORT = 15201;
const STUNNEL_SERVER_PORT = 15443;
export const NODE_TLS_CLIENT_PORT = 15202;
const NODE_TLS_SERVER_PORT = 15444;

interface RelayOptions {
  client: PodRef;
  server: PodRef;
  /** The TCP port of the server pod the relay stands in front of. */
  port: number;
  clientCert: WorkloadCertificate;
  serverCert: WorkloadCertificate;
}

/**
 * A TLS relay between two pods, in front of one TCP port of the server pod: the client pod
 * connects to a port on its own loopback. Mutual TLS 1.3 with AES-128-GCM and P-256 certificates,
 * as HBONE between Weft agents uses. Each end's key, chain and CA bundle are written to
 * <dir>/<side>.key|crt|ca.
 */
abstract class TlsRelay {
  readonly dir: string;
  readonly #children: Child[] = [];

  protected constructor(dir: string) {
    this.dir = dir;
  }

  protected static async begin<T extends TlsRelay>(relay: T, o: RelayOptions): Promise<T> {
    try {
      for (const [side, cert] of [['client', o.clientCert], ['server', o.serverCert]] as const) {
        const { key, cert: chain, ca } = cert.tlsCredentials();
        await writeFile(join(relay.dir, `${side}.key`), key, { mode: 0o600 });
        await writeFile(join(relay.dir, `${side}.crt`), chain);
        await writeFile(join(relay.dir, `${side}.ca`), ca);
      }
      await relay.start(o);
      return relay;
    } catch (err) {
      await relay.stop();
      throw err;
    }
  }

  protected abstract start(o: RelayOptions): Promise<void>;

  /** Starts the server end, waits for its port, then the client end. */
  protected async startPair(o: RelayOptions, name: string, serverPort: number, server: string[], client: string[]): Promise<void> {
    const s = await Child.start(`${name} server`, o.server.netns, server, {}, join(this.dir, 'server.log'));
    this.#children.push(s);
    await waitForPort(o.server.ip, serverPort, s);
    const c = await Child.start(`${name} client`, o.client.netns, client, {}, join(this.dir, 'client.log'));
    this.#children.push(c);
    // The client listens on the pod's loopback, out of the bench's reach: give it its moment.
    await new Promise((r) => setTimeout(r, 500));
    if (c.exited !== undefined) throw new Error(`${name} client ${c.exited}:\n${await tail(c.log)}`);
  }

  pids(): number[] {
    return this.#children.map((c) => c.pid);
  }

  async stop(): Promise<void> {
    await Promise.all(this.#children.map((c) => c.stop()));
    if (!process.env.BENCH_KEEP) await rm(this.dir, { recursive: true, force: true });
  }
}

/** stunnel (C, OpenSSL): what TLS alone costs per byte in a native relay. Client port STUNNEL_CLIENT_PORT. */
export class Stunnel extends TlsRelay {
  readonly #bin: string;

  private constructor(dir: string, bin: string) {
    super(dir);
    this.#bin = bin;
  }

  static async start(o: RelayOptions & { bin: string }): Promise<Stunnel> {
    return TlsRelay.begin(new Stunnel(await mkdtemp(join(tmpdir(), 'weft-bench-stunnel-')), o.bin), o);
  }

  protected async start(o: RelayOptions): Promise<void> {
    const conf = async (side: 'client' | 'server', service: string[]): Promise<string> => {
      const file = join(this.dir, `${side}.conf`);
      await writeFile(
        file,
        [
          'foreground = yes',
          'pid =',
          'syslog = no',
          'debug = 4',
          '[bench]',
          ...service,
          `cert = ${join(this.dir, `${side}.crt`)}`,
          `key = ${join(this.dir, `${side}.key`)}`,
          `CAfile = ${join(this.dir, `${side}.ca`)}`,
          'verifyChain = yes',
          'sslVersionMin = TLSv1.3',
          'ciphersuites = TLS_AES_128_GCM_SHA256',
          'socket = l:TCP_NODELAY=1',
          'socket = r:TCP_NODELAY=1',
          '',
        ].join('\n'),
      );
      return file;
    };
    const serverConf = await conf('server', [`accept = ${o.server.ip}:${STUNNEL_SERVER_PORT}`, `connect = 127.0.0.1:${o.port}`]);
    const clientConf = await conf('client', ['client = yes', `accept = 127.0.0.1:${STUNNEL_CLIENT_PORT}`, `connect = ${o.server.ip}:${STUNNEL_SERVER_PORT}`]);
    await this.startPair(o, 'stunnel', STUNNEL_SERVER_PORT, [this.#bin, serverConf], [this.#bin, clientConf]);
  }
}

/**
 * The same relay in Node (bench/node-tls-relay.ts, pipe() both ways, on the pinned runtime): the
 * per-byte and memory floor of any data path whose bytes pass through Node's TLS and streams.
 * Client port NODE_TLS_CLIENT_PORT.
 */
export class NodeTlsRelay extends TlsRelay {
  static async start(o: RelayOptions): Promise<NodeTlsRelay> {
    return TlsRelay.begin(new NodeTlsRelay(await mkdtemp(join(tmpdir(), 'weft-bench-node-tls-'))), o);
  }

  protected async start(o: RelayOptions): Promise<void> {
    // Run as JavaScript: Node's type stripping alone adds ~17 MB of RSS to a process (its
    // TypeScript parser), which the agent, shipped as a bundle, does not pay either.
    const script = join(this.dir, 'node-tls-relay.mjs');
    await writeFile(script, stripTypeScriptTypes(await readFile(join(import.meta.dirname, 'node-tls-relay.ts'), 'utf8')));
    const cmd = (role: string, listen: string, connect: string) => [process.execPath, script, role, '--listen', listen, '--connect', connect, '--dir', this.dir];
    await this.startPair(
      o,
      'Node TLS relay',
      NODE_TLS_SERVER_PORT,
      cmd('server', `${o.server.ip}:${NODE_TLS_SERVER_PORT}`, `127.0.0.1:${o.port}`),
      cmd('client', `127.0.0.1:${NODE_TLS_CLIENT_PORT}`, `${o.server.ip}:${NODE_TLS_SERVER_PORT}`),
    );
  }
}

/** A helper process in a pod's netns (the interop check's Weft server), stopped like the rest. */
export async function startInPod(name: string, pod: PodRef, cmd: string[], log: string): Promise<{ pid: number; stop: () => Promise<void>; output: () => Promise<string>; exited: () => string | undefined }> {
  const child = await Child.start(name, pod.netns, cmd, {}, log);
  return { pid: child.pid, stop: () => child.stop(), output: () => tail(log, 200), exited: () => child.exited };
}

/** Runs a command to completion in a pod's netns; resolves with its exit code and output. */
export function runInPod(pod: PodRef, cmd: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('nsenter', inNetns(pod.netns, cmd), { timeout: timeoutMs, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (err && typeof err.code !== 'number' ? err.message : '') });
    });
  });
}
