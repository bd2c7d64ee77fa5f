// Joins a tunnelled HTTP/2 stream and a TCP socket, carrying TCP semantics across:
//
//   END_STREAM  -> FIN            FIN         -> END_STREAM     (half-close, either direction first)
//   RST_STREAM  -> RST            RST / error -> RST_STREAM     (RFC 9113 8.5)
//
// The reset sent is RST_STREAM(CANCEL), not the CONNECT_ERROR that RFC 9113 suggests: Node's
// stream.close(code) first ends the writable side, so the peer would get END_STREAM and then the
// reset, and turn them into a FIN and then an RST. A truncated stream would look complete to
// anyone reading up to the FIN. Destroying the stream with an AbortError (resetStream) sends only
// the RST_STREAM, and Node's only code for that is CANCEL. Receivers treat any code as a reset.
//
// Used on both sides of a tunnel: by the server between the stream and the destination, and by
// the outbound path between the application's socket and the client stream. Stream -> socket moves
// the stream's own buffers; socket -> stream copies each read once, out of a shared landing buffer
// into recycled chunks (forwardRecycled). Backpressure from either side holds the other (HTTP/2
// flow control on the stream, the TCP window on the socket).

import http2 from 'node:http2';
import type net from 'node:net';
import { addAbortSignal } from 'node:stream';
import { forward } from '../forward.ts';

const { NGHTTP2_NO_ERROR } = http2.constants;

/** Sends RST_STREAM(CANCEL) without a preceding END_STREAM, and destroys the stream. */
export function resetStream(stream: http2.Http2Stream): void {
  if (stream.destroyed) return;
  const abort = new AbortController();
  addAbortSignal(abort.signal, stream);
  abort.abort();
}

export type SpliceOptions = {
  /** Close both sides after this long without data in either direction. 0 disables. */
  idleTimeoutMs?: number;
};

export type SpliceEnd =
  | 'closed' // both sides finished cleanly
  | 'stream-reset' // the stream was reset or its connection went away; the socket was reset
  | 'socket-reset' // the socket failed or was reset; the stream was reset
  | 'idle-timeout'; // no data for idleTimeoutMs; both sides were reset

export type SpliceResult = {
  end: SpliceEnd;
  /** Bytes written to the socket (received on the stream). */
  bytesToSocket: number;
  /** Bytes read from the socket (sent on the stream). */
  bytesFromSocket: number;
};

/**
 * Sends a TCP RST and destroys the socket. Once a FIN is under way libuv cannot reset the socket
 * (uv_tcp_close_reset fails and the handle would never close), so then it is a plain destroy: the
 * peer still gets an RST if it sends anything more.
 */
export function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}

/**
 * Stream -> socket, with backpressure (the socket's buffer full pauses the stream, whose unread
 * data then holds back HTTP/2 flow control). One writev per read batch: the stream yields a chunk
 * per TLS record and another at each DATA frame boundary inside a record (Node's nghttp2 sends
 * 16 KiB frames whatever SETTINGS_MAX_FRAME_SIZE allows), so one 64 KiB read from the tunnel's
 * socket is eight or so chunks; written one by one that was ~122k write() per GB at ~8 KiB each.
 * The socket is corked at a batch's first chunk and uncorked in setImmediate, not nextTick: Node
 * drains the nextTick queue after every chunk's callback, so a tick would flush each chunk alone.
 * Not pipe(): its end handling is wrong here (see splice) and its listeners cost memory per tunnel.
 */
function streamToSocket(stream: http2.Http2Stream, socket: net.Socket): void {
  let corked = false;
  const flush = (): void => {
    corked = false;
    socket.uncork();
  };
  stream.on('data', (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      socket.cork();
      setImmediate(flush);
    }
    if (!socket.write(chunk)) stream.pause();
  });
  socket.on('drain', () => stream.resume());
}

/**
 * Socket -> stream without a fresh buffer per read. By default Node reads each chunk into a new
 * 64 KiB allocation and, when the read is shorter, into a second one of the exact size; every
 * chunk then lives until a collection, and that garbage was the largest CPU item on the byte path
 * (bench/hbone-micro.ts --paths agent: V8's helper threads 0.9-1.2 s per GB). Here the socket reads
 * into one landing buffer shared by every spliced socket on the thread (libuv allocates, reads
 * and calls back for one socket at a time, and the callback copies out before returning), and the
 * bytes go on in 64 KiB chunks recycled once the stream's write callback says nghttp2 has sent
 * them: an Http2Stream keeps a written buffer until then, so a chunk is never reused early, and
 * an idle tunnel holds no read buffer. Reads under 16 KiB are copied into a buffer of their own
 * size, so a stream blocked by flow control holds at most 4x the bytes it carries.
 * Node offers this (net.Socket's onread) only when a socket is created, and the outbound path's
 * sockets are accepted ones; the same switch is made on a live socket through the internals that
 * onread sets. Without them (another Node), or with WEFT_SPLICE_READ=data, it is plain 'data'.
 */
const READ_MODE = process.env.WEFT_SPLICE_READ === 'data' ? 'data' : 'recycled';
const LANDING_BYTES = 64 * 1024;
const CHUNK_BYTES = 64 * 1024;
const SMALL_BYTES = 16 * 1024;
/** Chunks kept for reuse: enough for a few busy tunnels at once; beyond that they are garbage. */
const SPARE_MAX = 16;
let landing: Buffer | undefined;
const spare: Buffer[] = [];

/** How the socket -> stream direction ran, for tests and the bench: tunnels per mode, chunks made. */
export const spliceReadStats = { recycled: 0, data: 0, small: 0, chunks: 0, allocated: 0 };

type OnreadInternals = { buffer: symbol; generator: symbol; callback: symbol };
let onreadInternals: OnreadInternals | null | undefined;
function findOnreadInternals(socket: net.Socket): OnreadInternals | null {
  if (onreadInternals !== undefined) return onreadInternals;
  const own = Object.getOwnPropertySymbols(socket);
  const find = (name: string): symbol | undefined => own.find((s) => s.description === name);
  const [buffer, generator, callback] = [find('kBuffer'), find('kBufferGen'), find('kBufferCb')];
  onreadInternals = buffer && generator && callback ? { buffer, generator, callback } : null;
  return onreadInternals;
}

function writeRead(stream: http2.Http2Stream, from: Buffer, nread: number): boolean {
  if (nread < SMALL_BYTES) {
    spliceReadStats.small++;
    const chunk = Buffer.allocUnsafe(nread);
    from.copy(chunk, 0, 0, nread);
    return stream.write(chunk);
  }
  let ok = true;
  for (let offset = 0; offset < nread; offset += CHUNK_BYTES) {
    spliceReadStats.chunks++;
    let chunk = spare.pop();
    if (!chunk) {
      spliceReadStats.allocated++;
      chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES);
    }
    const held = chunk;
    const length = from.copy(chunk, 0, offset, Math.min(nread, offset + CHUNK_BYTES));
    // On an error the stream may not be done with it: left to the collector, never reused.
    ok = stream.write(chunk.subarray(0, length), (err) => {
      if (!err && spare.length < SPARE_MAX) spare.push(held);
    });
  }
  return ok;
}

/** forward(socket, stream) through the landing buffer; false when this socket cannot do it. */
function forwardRecycled(socket: net.Socket, stream: http2.Http2Stream): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Buffer) => void } })._handle;
  const internals = findOnreadInternals(socket);
  // Plain sockets only: nothing here was measured or tested on a TLS socket's cleartext reads.
  if (!internals || typeof handle?.useUserBuffer !== 'function' || (socket as { encrypted?: boolean }).encrypted || !socket.readable) return false;
  // What the socket read before the splice (an application speaks first, while the tunnel opens).
  for (let early = socket.read() as Buffer | null; early !== null; early = socket.read() as Buffer | null) stream.write(early);
  landing ??= Buffer.allocUnsafeSlow(LANDING_BYTES);
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[internals.buffer] = landing;
  fields[internals.generator] = null;
  // Returning false stops reading (readStop); the socket's resume() starts it again.
  fields[internals.callback] = (nread: number, buffer: Buffer): boolean => writeRead(stream, buffer, nread);
  handle.useUserBuffer(landing);
  stream.on('drain', () => socket.resume());
  // The FIN still arrives through the Readable side, which must be flowing to emit 'end'.
  socket.on('end', () => stream.end());
  socket.resume();
  return true;
}

function socketToStream(socket: net.Socket, stream: http2.Http2Stream): void {
  if (READ_MODE === 'recycled' && forwardRecycled(socket, stream)) {
    spliceReadStats.recycled++;
    return;
  }
  spliceReadStats.data++;
  forward(socket, stream);
}

export function splice(stream: http2.Http2Stream, socket: net.Socket, options: SpliceOptions = {}): Promise<SpliceResult> {
  // A socket that is not half-open capable answers the peer's FIN with its own at once, cutting off
  // whatever the tunnel still has to deliver.
  socket.allowHalfOpen = true;
  return new Promise((resolve) => {
    let end: SpliceEnd | undefined;
    let streamClosed = false;
    let socketClosed = false;
    const settle = (): void => {
      if (!streamClosed || !socketClosed) return;
      resolve({ end: end ?? 'closed', bytesToSocket: socket.bytesWritten, bytesFromSocket: socket.bytesRead });
    };

    // Stream -> socket. Not pipe()'s own end handling: Node also ends the readable side of a stream
    // that was reset or whose session went away (it is destroyed by then), and that must become a
    // TCP RST, not a FIN that would make a truncated stream look complete. Only END_STREAM is a FIN.
    streamToSocket(stream, socket);
    stream.on('end', () => {
      if (!stream.destroyed && !stream.rstCode) socket.end();
    });
    // Socket -> stream: the socket's FIN (its 'end'; a reset is an 'error') ends the stream.
    socketToStream(socket, stream);

    stream.on('error', () => {
      // Reported through rstCode on 'close'.
    });
    stream.on('close', () => {
      streamClosed = true;
      const clean = stream.rstCode === NGHTTP2_NO_ERROR && stream.readableEnded && stream.writableFinished;
      if (!clean && !socket.destroyed) {
        end ??= 'stream-reset';
        resetSocket(socket);
      }
      settle();
    });

    socket.on('error', () => {
      end ??= 'socket-reset';
      resetStream(stream);
    });
    socket.on('close', () => {
      socketClosed = true;
      // A socket destroyed before both directions finished is a reset, whoever destroyed it.
      if (!stream.closed && !(socket.readableEnded && socket.writableFinished)) {
        end ??= 'socket-reset';
        resetStream(stream);
      }
      settle();
    });

    const idleTimeoutMs = options.idleTimeoutMs ?? 0;
    if (idleTimeoutMs > 0) {
      // Http2Stream refreshes this timer on every read and write, in both directions.
      stream.setTimeout(idleTimeoutMs, () => {
        end ??= 'idle-timeout';
        resetStream(stream);
        resetSocket(socket);
      });
    }
  });
}
