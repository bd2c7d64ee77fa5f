// A minimal keep-alive HTTP/1.1 load client for the L7 benches (agent/l7/bench.ts,
// bench/tracing.ts): one request at a time per connection, with no client library's cost in the
// figures.
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';

const LOOPBACK = '127.0.0.1';

const REQUEST = Buffer.from('GET /bench HTTP/1.1\r\nHost: bench.example\r\n\r\n', 'latin1');

/** A keep-alive connection that sends one request at a time and reports each response's end. */
export class RawClient {
  readonly #socket: net.Socket;
  #buffered: Buffer = Buffer.alloc(0);
  #onResponse: (() => void) | undefined;
  busy = false;

  constructor(port: number) {
    this.#socket = net.connect({ host: LOOPBACK, port, noDelay: true });
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
  }

  ready(): Promise<unknown> {
    return once(this.#socket, 'connect');
  }

  send(onResponse: () => void): void {
    this.busy = true;
    this.#onResponse = onResponse;
    this.#socket.write(REQUEST);
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const headEnd = this.#buffered.indexOf('\r\n\r\n');
    if (headEnd === -1) return;
    const length = Number(/content-length:\s*(\d+)/i.exec(this.#buffered.subarray(0, headEnd).toString('latin1'))?.[1] ?? 0);
    const total = headEnd + 4 + length;
    if (this.#buffered.length < total) return;
    this.#buffered = this.#buffered.subarray(total);
    this.busy = false;
    this.#onResponse?.();
  }
}

export function percentileOf(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Closed loop: every connection sends its next request as soon as the previous one is answered. Latencies in ms, sorted. */
export async function closedLoopLatencies(port: number, seconds: number, connections: number): Promise<number[]> {
  const clients = Array.from({ length: connections }, () => new RawClient(port));
  await Promise.all(clients.map((c) => c.ready()));
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    clients.map(
      (client) =>
        new Promise<void>((resolve) => {
          const next = (): void => {
            if (performance.now() >= deadline) return resolve();
            const started = performance.now();
            client.send(() => {
              latencies.push(performance.now() - started);
              next();
            });
          };
          next();
        }),
    ),
  );
  clients.forEach((c) => c.close());
  return latencies.sort((a, b) => a - b);
}

/**
 * Open loop at a fixed rate: requests are due every 1/rate s whatever the answers do, spread over
 * 16 idle connections. Timers fire in ~1 ms steps, so requests leave in small bursts; latency
 * counts from the moment each request is written, the same way for every path. Latencies in ms,
 * sorted.
 */
export async function fixedRateLatencies(port: number, seconds: number, rate: number): Promise<number[]> {
  const clients = Array.from({ length: 16 }, () => new RawClient(port));
  await Promise.all(clients.map((c) => c.ready()));
  const latencies: number[] = [];
  const total = Math.floor(seconds * rate);
  const start = performance.now();
  let due = 0;
  let sent = 0;
  const dispatch = (): void => {
    for (const client of clients) {
      if (sent >= due) return;
      if (client.busy) continue;
      sent += 1;
      const written = performance.now();
      client.send(() => {
        latencies.push(performance.now() - written);
        dispatch();
      });
    }
  };
  while (due < total) {
    await sleep(1);
    due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    dispatch();
  }
  while (latencies.length < total) await sleep(5);
  clients.forEach((c) => c.close());
  return latencies.sort((a, b) => a - b);
}

/**
 * The HAProxy reference of the L7 benches: one thread, HTTP keep-alive both ways, connections to
 * the servers reused; `servers` are `host:port` with an optional weight (round robin).
 */
export function haproxyConfig(bind: string, servers: { name: string; address: string; weight?: number }[]): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  option http-keep-alive',
    '  http-reuse always',
    'frontend fe',
    `  bind ${bind}`,
    '  default_backend be',
    'backend be',
    '  balance roundrobin',
    ...servers.map((s) => `  server ${s.name} ${s.address}${s.weight !== undefined ? ` weight ${s.weight}` : ''}`),
    '',
  ].join('\n');
}
