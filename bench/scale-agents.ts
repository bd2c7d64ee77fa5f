// Simulated agents for bench/scale.ts: many real sync clients (agent/sync/client.ts: real TLS 1.3,
// HTTP/2, a real node-bound service-account token each, jittered backoff, resume by revision) in
// one process, each from its own 127/8 source address. Each keeps only what the bench measures
// (epoch, revision, which policy generations it holds) instead of a full agent store, so that a
// thousand fit on a small machine; every message is still parsed and validated as an agent does.
//
//   node bench/scale-agents.ts '<json ScaleAgentsConfig>'
//
// One JSON line on stdout per message received (AgentEvent), written as it arrives; SIGTERM stops
// the clients and exits.
import type { SyncMessage } from '../api/agent-sync.ts';
import { SyncClient, type SyncTarget } from '../agent/sync/client.ts';
import type { ApplyResult } from '../agent/state/store.ts';

export interface ScaleAgentsConfig {
  url: string;
  caFile: string;
  serverName: string;
  /** Token files: `${tokenDir}/${node}`. */
  tokenDir: string;
  nodes: string[];
  /** Agent i connects from 127.<200 + (first+i) >> 16>.<((first+i) >> 8) & 255>.<(first+i) & 255>. */
  first: number;
}

export interface AgentEvent {
  /** Node. */
  n: string;
  /** Arrival, ms since the epoch (performance.timeOrigin + now(): comparable across processes). */
  at: number;
  type: SyncMessage['type'];
  epoch: string;
  rev: number;
  bytes: number;
  /** Upserts and removes in the message (a snapshot: its resources). */
  up: number;
  rm: number;
  /** Access policies the message carried: [key, generation]. */
  pol: [string, number][];
  /** Access policies it removed. */
  polRm: string[];
}

export function sourceAddress(i: number): string {
  return `127.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** Only what the bench reads; applies deltas with the same base rule as the agent's store. */
class LightStore implements SyncTarget {
  epoch: string | undefined;
  revision = 0;
  readonly policies = new Map<string, number>();

  apply(msg: SyncMessage): ApplyResult {
    if (msg.type === 'snapshot') {
      this.policies.clear();
      for (const r of msg.resources) if (r.kind === 'AccessPolicy') this.policies.set(r.value.key, r.value.generation);
    } else {
      if (msg.epoch !== this.epoch || msg.base !== this.revision) return { ok: false, reason: `delta on ${msg.epoch}/${msg.base} but at ${this.epoch ?? '-'}/${this.revision}` };
      for (const r of msg.removes) if (r.kind === 'AccessPolicy') this.policies.delete(r.key);
      for (const r of msg.upserts) if (r.kind === 'AccessPolicy') this.policies.set(r.value.key, r.value.generation);
    }
    this.epoch = msg.epoch;
    this.revision = msg.revision;
    return { ok: true, changed: true };
  }
}

function eventOf(node: string, msg: SyncMessage, bytes: number): AgentEvent {
  const resources = msg.type === 'snapshot' ? msg.resources : msg.upserts;
  const pol: [string, number][] = [];
  for (const r of resources) if (r.kind === 'AccessPolicy') pol.push([r.value.key, r.value.generation]);
  const polRm = msg.type === 'delta' ? msg.removes.filter((r) => r.kind === 'AccessPolicy').map((r) => r.key) : [];
  return {
    n: node,
    at: performance.timeOrigin + performance.now(),
    type: msg.type,
    epoch: msg.epoch,
    rev: msg.revision,
    bytes,
    up: resources.length,
    rm: msg.type === 'delta' ? msg.removes.length : 0,
    pol,
    polRm,
  };
}

export function startAgents(cfg: ScaleAgentsConfig, emit: (e: AgentEvent) => void): () => void {
  const clients = cfg.nodes.map((node, i) => {
    const client = new SyncClient({
      url: cfg.url,
      node,
      caFile: cfg.caFile,
      tokenFile: `${cfg.tokenDir}/${node}`,
      serverName: cfg.serverName,
      agentVersion: 'scale-bench',
      store: new LightStore(),
      localAddress: sourceAddress(cfg.first + i),
      onMessage: (msg, bytes) => emit(eventOf(node, msg, bytes)),
      log: () => {},
    });
    client.start();
    return client;
  });
  return () => {
    for (const c of clients) c.stop();
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as ScaleAgentsConfig;
  let buffered: string[] = [];
  const flush = (): void => {
    if (buffered.length === 0) return;
    process.stdout.write(buffered.join(''));
    buffered = [];
  };
  const timer = setInterval(flush, 20);
  const stop = startAgents(cfg, (e) => buffered.push(`${JSON.stringify(e)}\n`));
  process.on('SIGTERM', () => {
    stop();
    clearInterval(timer);
    flush();
    process.exit(0);
  });
}
