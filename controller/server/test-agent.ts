// A minimal agent for tests: speaks the sync protocol of api/agent-sync.ts over a real HTTP/2 +
// TLS connection, line by line, so that tests can send exactly what they mean (including
// malformed lines) and read exactly what the controller sent.
import { connect, constants as h2 } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { SIGN_PATH, SYNC_PATH, parseSyncMessage } from '../../api/agent-sync.ts';
import type { AgentMessage, SignRequest, SyncMessage } from '../../api/agent-sync.ts';

export interface TestAgentOptions {
  url: string;
  ca: string;
  /** Name checked against the serving certificate. */
  servername: string;
  token?: string;
  /** The address to connect from (any 127.0.0.0/8 address on Linux): a distinct source per agent. */
  localAddress?: string;
}

export interface HttpReply {
  status: number;
  body: unknown;
  headers: IncomingHttpHeaders;
}

export class TestAgent {
  readonly session: ClientHttp2Session;
  #token: string | undefined;

  private constructor(session: ClientHttp2Session, token: string | undefined) {
    this.session = session;
    this.#token = token;
  }

  static async connect(opts: TestAgentOptions): Promise<TestAgent> {
    const session = connect(opts.url, { createConnection: () => dial(opts) });
    session.on('error', () => {}); // surfaced through the streams
    await once(session, 'connect');
    return new TestAgent(session, opts.token);
  }

  /** The token the next requests carry (a rotation, as the kubelet renews projected tokens). */
  set token(token: string | undefined) {
    this.#token = token;
  }

  /**
   * Opens a sync stream and sends `hello` (an object, or a raw line) as its first line. Like a
   * well-behaved agent, the stream ends its side when the controller ends its own, unless
   * `halfOpen` keeps it open (to see the controller reset it).
   */
  sync(hello: AgentMessage | string | null, opts: { halfOpen?: boolean } = {}): SyncStream {
    const stream = this.session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: SYNC_PATH,
      'content-type': 'application/x-ndjson',
      ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}),
    });
    const s = new SyncStream(stream, !opts.halfOpen);
    if (hello !== null) s.send(hello);
    return s;
  }

  /** A certificate request: an object, or a raw body (a string or exactly these bytes). */
  async sign(req: SignRequest | string | Buffer): Promise<HttpReply> {
    const stream = this.session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: SIGN_PATH,
      'content-type': 'application/json',
      ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}),
    });
    stream.end(typeof req === 'string' || Buffer.isBuffer(req) ? req : JSON.stringify(req));
    return readReply(stream);
  }

  /** Any request, for routing tests. */
  async request(method: string, path: string, body = ''): Promise<HttpReply> {
    const stream = this.session.request({ [h2.HTTP2_HEADER_METHOD]: method, [h2.HTTP2_HEADER_PATH]: path, ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}) });
    // Node ends GET and HEAD requests itself (no body).
    if (!stream.writableEnded) stream.end(body);
    return readReply(stream);
  }

  close(): void {
    this.session.destroy();
  }
}

function dial(opts: TestAgentOptions): TLSSocket {
  const u = new URL(opts.url);
  // A plain socket first: tls.connect's options do not take a local address.
  const socket = netConnect({ host: u.hostname, port: Number(u.port), ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  // The TLS socket and the session report failures; the plain socket under them would make an
  // ECONNRESET an uncaught error.
  socket.on('error', () => {});
  return tlsConnect({ socket, ca: opts.ca, servername: opts.servername, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
}

export class SyncStream {
  readonly stream: ClientHttp2Stream;
  readonly response: Promise<IncomingHttpHeaders>;
  readonly trailers: Promise<IncomingHttpHeaders>;
  /** Resolves when the stream has closed. */
  readonly closed: Promise<void>;
  readonly #queue: string[] = [];
  #waiter: (() => void) | undefined;
  #buffer = '';
  #ended = false;

  constructor(stream: ClientHttp2Stream, endWithPeer: boolean) {
    this.stream = stream;
    if (endWithPeer) stream.on('end', () => stream.end());
    stream.setEncoding('utf8');
    this.response = new Promise((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
    this.trailers = new Promise((resolve) => {
      stream.once('trailers', resolve);
      stream.once('close', () => resolve({}));
    });
    this.closed = new Promise((resolve) => stream.once('close', () => resolve()));
    this.response.catch(() => {});
    stream.on('error', () => {});
    stream.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) !== -1) {
        this.#queue.push(this.#buffer.slice(0, nl));
        this.#buffer = this.#buffer.slice(nl + 1);
      }
      this.#wake();
    });
    stream.on('close', () => {
      this.#ended = true;
      this.#wake();
    });
  }

  get status(): Promise<number> {
    return this.response.then((h) => Number(h[h2.HTTP2_HEADER_STATUS]));
  }

  send(msg: AgentMessage | string): void {
    this.stream.write(typeof msg === 'string' ? `${msg}\n` : `${JSON.stringify(msg)}\n`);
  }

  /** The next raw line, or null when the stream closed first. */
  async nextLine(timeoutMs = 5_000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (this.#ended) return this.#buffer.length > 0 ? this.#takeBuffer() : null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.#queue.shift() as string;
  }

  /** The next sync message (validated as an agent would), failing if the stream closes first. */
  async next(timeoutMs = 5_000): Promise<SyncMessage> {
    const line = await this.nextLine(timeoutMs);
    if (line === null) throw new Error('the stream closed');
    return parseSyncMessage(line);
  }

  /** Lines that arrive within `ms`. */
  async drain(ms: number): Promise<string[]> {
    const got: string[] = [];
    const until = Date.now() + ms;
    for (;;) {
      const left = until - Date.now();
      if (left <= 0) return got;
      try {
        const line = await this.nextLine(left);
        if (line === null) return got;
        got.push(line);
      } catch {
        return got;
      }
    }
  }

  /** The whole body of a refused stream (a JSON ErrorBody). */
  async body(): Promise<unknown> {
    await this.closed;
    const text = [...this.#queue.splice(0), this.#takeBuffer()].join('\n');
    return text ? JSON.parse(text) : undefined;
  }

  close(): void {
    this.stream.close();
  }

  #takeBuffer(): string {
    const b = this.#buffer;
    this.#buffer = '';
    return b;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

async function readReply(stream: ClientHttp2Stream): Promise<HttpReply> {
  stream.setEncoding('utf8');
  let text = '';
  stream.on('data', (c: string) => (text += c));
  const [headers] = (await once(stream, 'response')) as [IncomingHttpHeaders];
  await once(stream, 'end');
  return { status: Number(headers[h2.HTTP2_HEADER_STATUS]), body: text ? (JSON.parse(text) as unknown) : undefined, headers };
}
