// The request body of a routed HTTP/2 stream, for a rule that retries: it streams to the current
// attempt as it arrives (a streaming gRPC call that waits for an answer before it sends more must
// not wait here for its end) and a copy is kept, up to a bound, for a retry to send again from the
// start. Past the bound the copy is dropped and the stream is not retried: it goes on, streamed,
// to the attempt it is on. Between attempts the client's stream is paused, so flow control holds
// its further bytes back.
import http2 from 'node:http2';

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;

export class ReplayBody {
  readonly #ds: http2.ServerHttp2Stream;
  readonly #empty: boolean;
  readonly #bound: number;
  readonly #onFail: () => void;
  /** Every byte so far while `#kept` is not undefined (within the bound). */
  #kept: Buffer[] | undefined = [];
  #size = 0;
  /** Bytes that arrived with no attempt to take them, once nothing is kept (sent to the next attempt). */
  #pending: Buffer[] = [];
  #ended: boolean;
  #trailers: http2.IncomingHttpHeaders | undefined;
  #sink: http2.ClientHttp2Stream | undefined;

  /**
   * `empty`: the request ended with its headers. `bound`: bytes kept for a retry (0: none; a
   * declared content-length above it keeps nothing from the start). `onFail`: request trailers
   * the backend's stream would not take.
   */
  constructor(ds: http2.ServerHttp2Stream, o: { empty: boolean; bound: number; declaredLength: number; onFail: () => void }) {
    this.#ds = ds;
    this.#empty = o.empty;
    this.#ended = o.empty;
    this.#bound = o.bound;
    this.#onFail = o.onFail;
    if (o.bound === 0 || o.declaredLength > o.bound) this.#kept = undefined;
    if (o.empty) return;
    ds.on('trailers', (t: http2.IncomingHttpHeaders) => (this.#trailers = t));
    ds.on('data', (chunk: Buffer) => this.#data(chunk));
    ds.once('end', () => {
      this.#ended = true;
      // A stream that closed ended because it was reset: that must not reach the backend as a complete request.
      if (this.#sink && !ds.closed) this.#sink.end();
    });
  }

  /** Whether a new attempt can still be sent the whole request. */
  get replayable(): boolean {
    return this.#kept !== undefined;
  }

  /** The options of an attempt's request. */
  get options(): http2.ClientSessionRequestOptions {
    return { endStream: this.#empty, waitForTrailers: !this.#empty };
  }

  /** Sends the request's body to a new attempt: what was kept (or held), then the rest as it comes. */
  attach(us: http2.ClientHttp2Stream): void {
    this.#sink = us;
    if (this.#empty) return;
    us.on('wantTrailers', () => sendTrailers(us, this.#trailers, this.#onFail));
    us.on('drain', () => {
      if (this.#sink === us) this.#ds.resume();
    });
    const before = this.#kept ?? this.#pending;
    this.#pending = [];
    for (const chunk of before) us.write(chunk);
    if (!this.#ended) this.#ds.resume();
    else if (!this.#ds.closed) us.end();
  }

  /** The attempt is given up: the client's further bytes wait for the next one. */
  detach(): void {
    this.#sink = undefined;
    if (!this.#ended) this.#ds.pause();
  }

  /** A response is on its way to the client: nothing will be sent again, so nothing more is kept. */
  settle(): void {
    this.#kept = undefined;
  }

  #data(chunk: Buffer): void {
    const us = this.#sink;
    if (this.#kept) {
      // With no attempt to send to, the bytes are kept whatever the bound: the next attempt needs them.
      if (!us || this.#size + chunk.length <= this.#bound) {
        this.#kept.push(chunk);
        this.#size += chunk.length;
      } else this.#kept = undefined;
    } else if (!us) this.#pending.push(chunk);
    if (!us) return void this.#ds.pause();
    if (us.destroyed) return;
    if (!us.write(chunk)) this.#ds.pause();
  }
}

/** Ends a stream that waited for its trailers; one Node will not send resets the stream instead. */
export function sendTrailers(stream: http2.Http2Stream, trailers: http2.IncomingHttpHeaders | undefined, fail: () => void): void {
  if (stream.closed || stream.destroyed) return;
  try {
    stream.sendTrailers(trailers ?? {});
  } catch {
    fail();
    stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}
