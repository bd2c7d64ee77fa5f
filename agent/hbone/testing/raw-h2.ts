// A deliberately naive HTTP/2 client for hostile-input tests: it writes frames byte by byte, so it
// can send what Node's own client refuses to (duplicate or misplaced pseudo-headers, header names
// and values with any bytes, frames for streams it never opened), over real TLS 1.3 with a real
// workload certificate. HPACK is only "literal without indexing, no Huffman", which every decoder
// must accept. It reads back only frame types and stream ids: enough to tell an answer (HEADERS),
// a reset (RST_STREAM) and a closed connection (GOAWAY, FIN, reset) apart.

import { once } from 'node:events';
import tls from 'node:tls';
import { FRAME, FrameReader, PREFACE, SETTINGS_ACK, settings, wantsAck, type ReceivedFrame } from '../../testing/h2-frames.ts';

export { FLAG, FRAME, frame, headerBlock, headersFrame, rstStream, settings, type HeaderField, type ReceivedFrame } from '../../testing/h2-frames.ts';

/** A TLS connection speaking raw HTTP/2; collects the frames the server sends. */
export class RawH2 {
  readonly socket: tls.TLSSocket;
  readonly frames: ReceivedFrame[] = [];
  readonly #reader = new FrameReader();
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
    for (const f of this.#reader.push(chunk)) {
      if (this.#ackSettings && wantsAck(f)) this.write(SETTINGS_ACK);
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
