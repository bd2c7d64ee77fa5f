// The state file of a running playground: who supervises it, which slot it owns, and the pids of
// its processes, so that `weft dev down` can clean up even after the supervisor crashed.
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_SLOTS, RUN_ROOT, type PlaygroundPlan } from './config.ts';

export type Phase = 'starting' | 'ready' | 'failed' | 'stopping';

export interface PlaygroundState {
  name: string;
  slot: number;
  phase: Phase;
  error?: string;
  supervisorPid: number;
  startedAt: string;
  readyAt?: string;
  /** Seconds from start to a Ready cluster. */
  upSeconds?: number;
  pids: Record<string, number>;
  /** Whether Weft runs on this playground. */
  mesh?: boolean;
  /** The nodes' kind: the simulated kubelet (absent in older state files) or kubelet + containerd. */
  runtime?: 'simulated' | 'real';
  plan: PlaygroundPlan;
  repo: string;
}

export function stateFile(name: string): string {
  return join(RUN_ROOT, name, 'state.json');
}

export async function readState(name: string): Promise<PlaygroundState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile(name), 'utf8')) as PlaygroundState;
  } catch {
    return undefined;
  }
}

export async function writeState(s: PlaygroundState): Promise<void> {
  const file = stateFile(s.name);
  await mkdir(join(RUN_ROOT, s.name), { recursive: true });
  await writeFile(`${file}.tmp`, JSON.stringify(s, null, 2));
  await rename(`${file}.tmp`, file);
}

export async function listStates(): Promise<PlaygroundState[]> {
  let names: string[];
  try {
    names = await readdir(RUN_ROOT);
  } catch {
    return [];
  }
  const out: PlaygroundState[] = [];
  for (const n of names) {
    const s = await readState(n);
    if (s) out.push(s);
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The lowest slot no other playground's state file holds. */
export async function freeSlot(exclude: string): Promise<number> {
  const used = new Set((await listStates()).filter((s) => s.name !== exclude).map((s) => s.slot));
  for (let i = 0; i < MAX_SLOTS; i++) if (!used.has(i)) return i;
  throw new Error(`all ${MAX_SLOTS} playground slots are in use: run "weft dev down --name <name>" for one`);
}

/** A lock older than this was left by a process that died inside the few milliseconds it is held. */
const STALE_LOCK_MS = 10_000;

/**
 * Chooses the lowest free slot and records it in a state file for `name` before anyone else can
 * choose: choosing and recording happen under one lock file (O_EXCL), so two playgrounds started at
 * the same moment cannot get the same slot (and with it the same addresses and ports).
 */
export async function claimSlot(name: string, record: (slot: number) => Promise<void>): Promise<number> {
  await mkdir(RUN_ROOT, { recursive: true });
  const lock = join(RUN_ROOT, '.slot.lock');
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > STALE_LOCK_MS) await rm(lock, { force: true });
      else if (Date.now() > deadline) throw new Error(`${lock} has been held for 30 s; remove it if no "weft dev up" is running`, { cause: e });
      else await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
    }
  }
  try {
    const slot = await freeSlot(name);
    await record(slot);
    return slot;
  } finally {
    await rm(lock, { force: true });
  }
}
