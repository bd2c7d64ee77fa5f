// Drives tests/helpers/held-connections.ts inside a pod's network namespace: long-lived busy
// connections to a server, plus new-connection probes, reported on demand. Shared by the tests
// that change agents under load (upgrade.test.ts, lifecycle.test.ts).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO } from './playground.ts';

export interface Report {
  type: 'report';
  held: number;
  open: number;
  dropped: { id: number; reason: string; atMs: number }[];
  echoes: number;
  maxGapMs: number;
  probes: { ok: number; failed: number; failures: { reason: string; atMs: number; at: string }[] };
}
export interface Verified {
  type: 'verified';
  ok: number;
  failed: number;
}

/** tests/helpers/held-connections.ts inside a pod: long-lived busy connections, plus probes. */
export class Holder {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting: { type: string; resolve: (o: Record<string, unknown>) => void }[] = [];
  /** Messages that arrived before anyone asked for them. */
  readonly #unclaimed: Record<string, unknown>[] = [];
  readonly #exited: Promise<number | null>;
  stderr = '';

  /**
   * `count` connections to `server` (host:port) from inside a pod's network namespace: a path
   * (DevStatusJson's netnsPath, both runtimes) or a name under /run/netns.
   */
  constructor(netns: string, server: string, count: number) {
    const enter = netns.startsWith('/') ? ['nsenter', `--net=${netns}`, '--'] : ['ip', 'netns', 'exec', netns];
    const [cmd = '', ...args] = enter;
    this.#child = spawn(cmd, [...args, process.execPath, join(REPO, 'tests/helpers/held-connections.ts'), server, String(count)]);
    this.#child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.#exited = new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)));
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>;
      const i = this.#waiting.findIndex((w) => w.type === msg.type);
      if (i >= 0) this.#waiting.splice(i, 1)[0]?.resolve(msg);
      else this.#unclaimed.push(msg);
    });
  }

  #next<T>(type: string, timeoutMs = 30_000): Promise<T> {
    const i = this.#unclaimed.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.#unclaimed.splice(i, 1)[0] as T);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${type}" from the holder in ${timeoutMs} ms: ${this.stderr}`)), timeoutMs);
      void this.#exited.then((code) => reject(new Error(`the holder exited (${code}): ${this.stderr}`)));
      this.#waiting.push({ type, resolve: (o) => (clearTimeout(timer), resolve(o as T)) });
    });
  }

  ready(): Promise<{ held: number }> {
    return this.#next('ready', 60_000);
  }

  report(): Promise<Report> {
    const r = this.#next<Report>('report');
    this.#child.stdin.write('report\n');
    return r;
  }

  verify(): Promise<Verified> {
    const r = this.#next<Verified>('verified');
    this.#child.stdin.write('verify\n');
    return r;
  }

  async close(): Promise<void> {
    const r = this.#next('closed');
    this.#child.stdin.write('close\n');
    await r;
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}
