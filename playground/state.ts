// The state file of a running playground: who supervises it, which slot it owns, and the pids of
// its processes, so that `weft dev down` can clean up even after the supervisor crashed.
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
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

/** The lowest slot no other live playground holds. */
export async function freeSlot(exclude: string): Promise<number> {
  const used = new Set((await listStates()).filter((s) => s.name !== exclude).map((s) => s.slot));
  for (let i = 0; i < MAX_SLOTS; i++) if (!used.has(i)) return i;
  throw new Error(`all ${MAX_SLOTS} playground slots are in use: run "weft dev down --name <name>" for one`);
}
