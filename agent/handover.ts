// How the agent processes of one node hand the node over during an upgrade (a DaemonSet with
// maxSurge runs the new agent beside the old one until the new one is ready).
//
// The agent socket, <stateDir>/agent.sock, answers "who are you and are you ready". The newest
// process owns the path (it renames its socket over the old one at start), so:
// - a process that finds someone listening there at start has a predecessor still serving the
//   node: it binds its capture listeners only once it is ready (see main.ts);
// - a process whose path has been taken over has a successor: the node's readiness is the
//   successor's. Both processes answer the kubelet's probes on the node's 15021 (SO_REUSEPORT),
//   and either may get the new pod's probe: the old one forwards the question, so that the new
//   pod is reported ready only when the new process is, wherever the kernel sends the probe;
// - tools (the playground's agent upgrade) learn when a given process is ready.
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { Redirector } from './redirect/nftables.ts';
import type { EnrolledPod } from './redirect/rules.ts';
import { OwnedSocketPath } from './unix-socket.ts';
import { CodedError } from '../api/coded-error.ts';

export const AGENT_SOCKET = 'agent.sock';

/** What an agent process says about itself on the agent socket. */
export interface AgentStatus {
  pid: number;
  version: string;
  startedAt: string;
  /** Why the process is not ready; absent when it is. */
  notReady?: string;
  draining: boolean;
  /**
   * Once it has decided at its stop (kube/stop-decision.ts): whether it takes Weft off the node.
   * An older process stopped in the same `helm uninstall` waits for this.
   */
  stopDecision?: { uninstall: boolean; reason: string };
}

export class HandoverError extends CodedError<'AGENT_SOCKET_FAILED' | 'AGENT_STATUS_INVALID' | 'HANDED_OVER'> {
  override readonly name = 'HandoverError';
}

export class AgentSocket {
  readonly #socket: OwnedSocketPath;

  private constructor(socket: OwnedSocketPath) {
    this.#socket = socket;
  }

  /** Takes the node's agent socket over (atomically) and answers with `status()`. */
  static async open(path: string, status: () => AgentStatus): Promise<AgentSocket> {
    const create = (): Server =>
      createServer((req, res) => {
        if (req.method !== 'GET' || req.url !== '/status') return void res.writeHead(404).end();
        const body = JSON.stringify(status());
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
    // Only root reaches it: it says little, but nothing outside the node's agents needs it.
    const socket = new OwnedSocketPath({ path, mode: 0o600, create });
    await socket.listen();
    return new AgentSocket(socket);
  }

  /**
   * The status of the process that took the path over from this one, or undefined while this
   * process still owns it (or its successor does not answer: then this process speaks for itself).
   */
  async successor(): Promise<AgentStatus | undefined> {
    if (await this.#socket.ours()) return undefined;
    return queryAgent(this.#socket.path).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.#socket.close();
  }
}

/** Asks the agent listening at `path` for its status. */
export function queryAgent(path: string, timeoutMs = 1000): Promise<AgentStatus> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time (agent: false): a pooled one would still reach whichever
    // process answered before, not the one that owns the path now.
    const req = request({ socketPath: path, path: '/status', method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(parseStatus(res.statusCode, Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e instanceof Error ? e : new HandoverError('AGENT_STATUS_INVALID', String(e)));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new HandoverError('AGENT_SOCKET_FAILED', `no answer on ${path} within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(e instanceof HandoverError ? e : new HandoverError('AGENT_SOCKET_FAILED', `${path}: ${e.code ?? e.message}`)),
    );
    req.end();
  });
}

function parseStatus(statusCode: number | undefined, body: string): AgentStatus {
  const invalid = (why: string) => new HandoverError('AGENT_STATUS_INVALID', `agent socket answered ${statusCode ?? '?'}: ${why}`);
  if (statusCode !== 200) throw invalid(body.slice(0, 200));
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw invalid('not JSON');
  }
  const o = v as Partial<AgentStatus> | null;
  if (typeof o !== 'object' || o === null) throw invalid('not an object');
  if (typeof o.pid !== 'number' || typeof o.version !== 'string' || typeof o.startedAt !== 'string' || typeof o.draining !== 'boolean') {
    throw invalid('missing pid, version, startedAt or draining');
  }
  if (o.notReady !== undefined && typeof o.notReady !== 'string') throw invalid('notReady is not a string');
  const d = o.stopDecision as { uninstall?: unknown; reason?: unknown } | undefined | null;
  if (d !== undefined && (typeof d !== 'object' || d === null || typeof d.uninstall !== 'boolean' || typeof d.reason !== 'string')) throw invalid('stopDecision is not { uninstall, reason }');
  return {
    pid: o.pid,
    version: o.version,
    startedAt: o.startedAt,
    draining: o.draining,
    ...(o.notReady !== undefined ? { notReady: o.notReady } : {}),
    ...(d ? { stopDecision: { uninstall: d.uninstall as boolean, reason: d.reason as string } } : {}),
  };
}

/**
 * The redirector of a process that may hand its node over. Once it drains, the node's rules and
 * the enrolment checkpoint belong to its successor, and a change from this process (its enroller
 * reconciling after a controller update) would overwrite theirs with its own, older view: such a
 * change is refused before it is applied, which also keeps the enroller from checkpointing it.
 */
export class HandoverRedirector extends Redirector {
  #handedOver = false;

  handOver(): void {
    this.#handedOver = true;
  }

  override async sync(pods: EnrolledPod[]): Promise<void> {
    this.#check();
    await super.sync(pods);
  }

  override async enrol(pod: EnrolledPod): Promise<void> {
    this.#check();
    await super.enrol(pod);
  }

  override async release(pod: EnrolledPod): Promise<void> {
    this.#check();
    await super.release(pod);
  }

  #check(): void {
    if (this.#handedOver) throw new HandoverError('HANDED_OVER', 'this agent process is draining: the node belongs to its successor');
  }
}

const MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';

/**
 * Lets the kernel move connections that completed their handshake on a closing SO_REUSEPORT
 * listener, but were not accepted yet, to another listener of the group (Linux 5.14+). Without it,
 * the few connections caught in the old process's accept queue when it stops accepting are reset:
 * another node's tunnel connection is then retried by its agent's pool (hbone/pool.ts), but a
 * pod's own connection to 15001 or 15006 reaches its client as a reset.
 * Per network namespace; a container with a read-only /proc/sys cannot set it, and the node's
 * configuration must (the chart's agent DaemonSet says so). Returns what happened, for the log.
 */
export async function enableRequestMigration(): Promise<'on' | 'enabled' | { error: string }> {
  try {
    if ((await readFile(MIGRATE_REQ, 'utf8')).trim() === '1') return 'on';
    await writeFile(MIGRATE_REQ, '1\n');
    return 'enabled';
  } catch (e) {
    return { error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
}
