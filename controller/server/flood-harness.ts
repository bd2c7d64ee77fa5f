// Test support for the flood tests (agent-server.flood.test.ts in-process, and
// agent-server-flood.playground.test.ts against a real API server): the hostile pod as a process
// of its own (flood-client.ts), and a legitimate agent doing what a real one does while it runs
// (agent/sync/): one long-lived connection for sync, a new connection per certificate request,
// and a rotated token every few rounds, whose first use needs a review. Latencies are measured
// from the agent's side; an answer later than `giveUpMs` counts as that late (and failed).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import type { FloodReport } from './flood-client.ts';
import { TestAgent } from './test-agent.ts';

export interface Endpoint {
  url: string;
  ca: string;
  servername: string;
}

export interface FloodOptions {
  localAddress: string;
  connections: number;
  streams: number;
  /** For the CA file the flood process reads. */
  dir: string;
}

/** Starts the flood; the returned function stops it and tells what it saw. Killed at teardown. */
export async function startFlood(t: Test, at: Endpoint, o: FloodOptions): Promise<() => Promise<FloodReport>> {
  const caFile = join(o.dir, `flood-ca-${process.pid}-${Date.now()}.pem`);
  await writeFile(caFile, at.ca);
  const cfg = { url: at.url, caFile, servername: at.servername, localAddress: o.localAddress, connections: o.connections, streams: o.streams };
  const child = spawn(process.execPath, [new URL('./flood-client.ts', import.meta.url).pathname, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'started') throw new Error(`the flood client did not start: ${String(first.value)}`);
  return async () => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const line = await lines.next();
    await exited;
    return JSON.parse(String(line.value)) as FloodReport;
  };
}

export interface Sample {
  ms: number;
  ok: boolean;
}

export interface AgentWork {
  node: string;
  /** The address the agent connects from. */
  source: string;
  /** The first token, then one per rotation. */
  nextToken: () => Promise<string> | string;
  csrPem: string;
  /** A service account with a pod on `node`. */
  identity: { namespace: string; serviceAccount: string };
  rounds: number;
  rotateEvery: number;
  paceMs: number;
  giveUpMs: number;
}

async function timed(giveUpMs: number, fn: () => Promise<boolean>): Promise<Sample> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const ok = await Promise.race([fn().catch(() => false), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), giveUpMs)))]);
  clearTimeout(timer);
  return { ms: Math.min(giveUpMs, performance.now() - started), ok };
}

/** One agent's sync and sign latencies over `rounds` rounds. */
export async function legitAgent(at: Endpoint, w: AgentWork): Promise<Sample[]> {
  let token = await w.nextToken();
  const connect = (): Promise<TestAgent> => TestAgent.connect({ ...at, token, localAddress: w.source });
  const syncConn = await connect();
  const samples: Sample[] = [];
  try {
    for (let round = 0; round < w.rounds; round++) {
      if (round > 0 && round % w.rotateEvery === 0) {
        token = await w.nextToken();
        syncConn.token = token;
      }
      samples.push(
        await timed(w.giveUpMs, async () => {
          const s = syncConn.sync({ type: 'hello', node: w.node, agentVersion: 'flood-test' });
          try {
            return (await s.next(w.giveUpMs)).type === 'snapshot';
          } finally {
            s.close();
          }
        }),
      );
      samples.push(
        await timed(w.giveUpMs, async () => {
          const a = await connect();
          try {
            return (await a.sign({ ...w.identity, csrPem: w.csrPem })).status === 200;
          } finally {
            a.close();
          }
        }),
      );
      await sleep(w.paceMs);
    }
  } finally {
    syncConn.close();
  }
  return samples;
}

export interface Latencies {
  samples: number;
  p50: number;
  p99: number;
  max: number;
  failures: number;
}

export function latencies(samples: Sample[]): Latencies {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const pct = (p: number): number => Math.round(ms[Math.min(ms.length - 1, Math.ceil(p * ms.length) - 1)] ?? NaN);
  return { samples: ms.length, p50: pct(0.5), p99: pct(0.99), max: Math.round(ms[ms.length - 1] ?? NaN), failures: samples.filter((s) => !s.ok).length };
}
