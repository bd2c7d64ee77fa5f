// A deliberately naive HTTP/2 client for hostile-input tests: it writes frames byte by byte, so it
// can send what Node's own client refuses to (duplicate or misplaced pseudo-headers, header names
// and values with any bytes, frames for streams it never opened), over real TLS 1.3 with a real
// workload certificate. HPACK is only "literal without indexing, no Huffman", which every decoder
// must accept. It reads back only frame types and stream ids: enough to tell an answer (HEADERS),
// a reset (RST_STREAM) and a closed connection (GOAWAY, FIN, reset) apart.

import { once } from 'node:events';
import tls from 'node:tls';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export type HeaderField = [name: string | Buffer, value: string | Buffer];

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** An HPACK integer with an n-bit prefix (RFC 7541 5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const bytes = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function hpackString(s: string | Buffer): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return Buffer.concat([hpackInt(bytes.length, 7), bytes]);
}

/** A header block of literal fields without indexing, new names (RFC 7541 6.2.2). */
export function headerBlock(fields: readonly HeaderField[]): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

export function headersFrame(streamId: number, fields: readonly HeaderField[], opts: { endStream?: boolean } = {}): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (opts.endStream ? FLAG.END_STREAM : 0), streamId, headerBlock(fields));
}

export function rstStream(streamId: number, code = 8 /* CANCEL */): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function settings(values: Record<number, number> = {}): Buffer {
  const entries = Object.entries(values);
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    payload.writeUInt16BE(Number(id), i * 6);
    payload.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

export type ReceivedFrame = { type: number; flags: number; streamId: number; payload: Buffer };

/** A TLS connection speaking raw HTTP/2; collects the frames the server sends. */
export class RawH2 {
  readonly socket: tls.TLSSocket;
  readonly frames: ReceivedFrame[] = [];
  #buffer = Buffer.alloc(0);
  #closed: Promise<void>;
  #waiters = new Set<() => void>();
  readonly #ackSettings: boolean;

  private constructor(socket: tls.TLSSocket, ackSettings: boolean) {
    this.socket = socket;
    this.#ackSettings = ackSettings;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.#closed.then(() => this.#wake());
  }

  /**
   * TLS with the given context and ALPN h2; `preface` sends the client preface and SETTINGS,
   * `ackSettings` (default: as `preface`) acknowledges the server's SETTINGS.
   */
  static async connect(port: number, secureContext: tls.SecureContext, opts: { preface?: boolean; ackSettings?: boolean; alpn?: string[] } = {}): Promise<RawH2> {
    const socket = tls.connect({ host: '127.0.0.1', port, secureContext, ALPNProtocols: opts.alpn ?? ['h2'], checkServerIdentity: () => undefined });
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    const raw = new RawH2(socket, opts.ackSettings ?? opts.preface ?? true);
    if (opts.preface ?? true) raw.write(Buffer.concat([PREFACE, settings()]));
    return raw;
  }

  write(data: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  get isClosed(): boolean {
    return this.socket.destroyed || this.socket.readableEnded;
  }

  closed(): Promise<void> {
    return this.#closed;
  }

  /** Resolves once `test` holds for the frames received, the connection closed, or `timeoutMs`. */
  async until(test: (frames: ReceivedFrame[]) => boolean, timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!test(this.frames)) {
      if (this.isClosed || Date.now() >= deadline) return test(this.frames);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
    return true;
  }

  /** What happened to a stream: the server answered, reset it, or closed the connection. */
  async outcome(streamId: number, timeoutMs = 2000): Promise<'answered' | 'reset' | 'connection-closed' | 'nothing'> {
    const mine = (f: ReceivedFrame): boolean => f.streamId === streamId && (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM);
    const goaway = (f: ReceivedFrame): boolean => f.type === FRAME.GOAWAY;
    await this.until((frames) => frames.some(mine) || frames.some(goaway), timeoutMs);
    const first = this.frames.find(mine);
    if (first) return first.type === FRAME.HEADERS ? 'answered' : 'reset';
    if (this.frames.some(goaway) || this.isClosed) return 'connection-closed';
    return 'nothing';
  }

  destroy(): void {
    this.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      const f = { type: this.#buffer.readUInt8(3), flags: this.#buffer.readUInt8(4), streamId: this.#buffer.readUInt32BE(5) & 0x7fffffff, payload: this.#buffer.subarray(9, 9 + length) };
      this.#buffer = this.#buffer.subarray(9 + length);
      if (this.#ackSettings && f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      this.frames.push(f);
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }
}
