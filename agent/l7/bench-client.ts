// A minimal keep-alive HTTP/1.1 load client for the L7 benches (agent/l7/bench.ts,
// bench/tracing.ts): one request at a time per connection, with no client library's cost in the
// figures.
import { once } from 'node:events';
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
