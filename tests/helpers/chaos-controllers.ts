// Controller replicas for the chaos suite's leader change and certificate-expiry rows. The
// playground runs one controller (the chart runner, for the Deployment); a leader change needs
// two. This takes the controller over from the runner and runs replicas itself, each exactly as
// the runner ran it (its command line and environment, read from /proc), differing only in its
// name in the Lease (POD_NAME) and its addresses:
// - adopt(): the Deployment is deleted, so the runner stops its controller (SIGTERM: it hands the
//   Lease back) and does not restart it; from then on the test owns every controller process.
// - The agents dial the playground's address and port 15012 (WEFT_CONTROLLER). route() stands in
//   for the controller's Service: a DNAT in every node's network namespace sends new connections
//   to that address to another replica's port, as kube-proxy does once a dead endpoint is gone.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { sh } from './playground.ts';

export const AGENT_API_PORT = 15012;

export interface Replica {
  identity: string;
  port: number;
  healthPort: number;
  proc: ChildProcess;
  startedAt: number;
  /** When /readyz first answered 200. */
  readyAt: number;
}

export interface AgentRecord {
  node: string;
  streams: number;
  lastAckedRevision?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ControllerReplicas {
  readonly #hostIP: string;
  readonly #nodeNetns: string[];
  readonly #logDir: string;
  readonly #kubectl: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  #template: { cmd: string; args: string[]; env: Record<string, string> } | undefined;
  readonly replicas = new Map<string, Replica>();
  #table = '';

  constructor(o: { hostIP: string; nodeNetns: string[]; logDir: string; kubectl: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }> }) {
    this.#hostIP = o.hostIP;
    this.#nodeNetns = o.nodeNetns;
    this.#logDir = o.logDir;
    this.#kubectl = o.kubectl;
  }

  get adopted(): boolean {
    return this.#template !== undefined;
  }

  /** Takes over from the chart runner's controller (process `pid`): its command and environment, then it stops. */
  async adopt(pid: number): Promise<void> {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    const env: Record<string, string> = {};
    for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const [cmd = process.execPath, ...args] = argv;
    this.#template = { cmd, args, env };
    const r = await this.#kubectl(['-n', 'weft-system', 'delete', 'deployment', 'weft-controller', '--wait=true']);
    if (r.code !== 0) throw new Error(`delete the controller Deployment: ${r.stderr}`);
    for (let i = 0; i < 300 && alive(pid); i++) await sleep(100);
    if (alive(pid)) throw new Error(`the runner's controller (pid ${pid}) did not stop`);
  }

  /** Starts a replica named `identity` listening on `port` (agent API) and `healthPort`; resolves once ready. */
  async start(identity: string, port: number, healthPort: number): Promise<Replica> {
    if (!this.#template) throw new Error('adopt() first');
    const { cmd, args, env } = this.#template;
    const log = openSync(`${this.#logDir}/chaos-${identity}.log`, 'a');
    const proc = spawn(cmd, args, {
      env: { ...env, POD_NAME: identity, WEFT_LISTEN: `${this.#hostIP}:${port}`, WEFT_HEALTH_LISTEN: `${this.#hostIP}:${healthPort}` },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const replica: Replica = { identity, port, healthPort, proc, startedAt: Date.now(), readyAt: 0 };
    this.replicas.set(identity, replica);
    while (Date.now() - replica.startedAt < 90_000) {
      if (proc.exitCode !== null) throw new Error(`replica ${identity} exited with ${proc.exitCode} (log: ${this.#logDir}/chaos-${identity}.log)`);
      if (await this.ready(replica)) {
        replica.readyAt = Date.now();
        return replica;
      }
      await sleep(100);
    }
    throw new Error(`replica ${identity} not ready after 90 s`);
  }

  ready(r: Replica): Promise<boolean> {
    return fetch(`http://${this.#hostIP}:${r.healthPort}/readyz`).then((res) => res.ok, () => false);
  }

  /** The replica's view of the agents (its /agents). */
  async agents(r: Replica): Promise<AgentRecord[]> {
    const res = await fetch(`http://${this.#hostIP}:${r.healthPort}/agents`);
    return (await res.json()) as AgentRecord[];
  }

  /** Resolves once every node in `nodes` has a sync stream to `r`. */
  async connected(r: Replica, nodes: string[], timeoutMs = 60_000): Promise<number> {
    const start = Date.now();
    while (Date.now() - start < timeoutMs) {
      const agents = await this.agents(r).catch(() => []);
      if (nodes.every((n) => agents.some((a) => a.node === n && a.streams > 0))) return Date.now() - start;
      await sleep(200);
    }
    throw new Error(`not every agent connected to ${r.identity} within ${timeoutMs} ms`);
  }

  /** SIGKILL: a crash, no Lease handed back, no stream closed cleanly. */
  kill(identity: string): void {
    const r = this.replicas.get(identity);
    r?.proc.kill('SIGKILL');
    this.replicas.delete(identity);
  }

  /** Who holds the Lease now. */
  async leader(): Promise<string> {
    const r = await this.#kubectl(['-n', 'weft-system', 'get', 'lease', 'weft-controller', '-o', 'jsonpath={.spec.holderIdentity}']);
    return r.code === 0 ? r.stdout.trim() : '';
  }

  /** When the current holder took the Lease (its acquireTime), ms since the epoch. */
  async acquiredAt(): Promise<number> {
    const r = await this.#kubectl(['-n', 'weft-system', 'get', 'lease', 'weft-controller', '-o', 'jsonpath={.spec.acquireTime}']);
    return Date.parse(r.stdout.trim());
  }

  /** Waits until `identity` holds the Lease; resolves with the wait in ms. */
  async leaderIs(identity: string, timeoutMs: number): Promise<number> {
    const start = Date.now();
    while (Date.now() - start < timeoutMs) {
      if ((await this.leader()) === identity) return Date.now() - start;
      await sleep(250);
    }
    return Infinity;
  }

  /** New connections from the nodes to the agent API port go to `port` instead (the Service's endpoint moved). */
  async route(port: number): Promise<void> {
    await this.unroute();
    if (port === AGENT_API_PORT) return;
    this.#table = `weft_chaos_svc_${randomBytes(3).toString('hex')}`;
    const rules = [
      `add table ip ${this.#table}`,
      `add chain ip ${this.#table} out { type nat hook output priority -100; }`,
      `add rule ip ${this.#table} out ip daddr ${this.#hostIP} tcp dport ${AGENT_API_PORT} dnat to ${this.#hostIP}:${port}`,
    ].join('\n');
    for (const ns of this.#nodeNetns) {
      const r = await sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules });
      if (r.code !== 0) throw new Error(`route the agent API in ${ns}: ${r.stderr}`);
    }
  }

  async unroute(): Promise<void> {
    if (!this.#table) return;
    for (const ns of this.#nodeNetns) await sh('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', this.#table]);
    this.#table = '';
  }

  async close(): Promise<void> {
    for (const identity of [...this.replicas.keys()]) this.kill(identity);
    await this.unroute();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
