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
// the outbound path between the application's socket and the client stream. Data moves without
// copies, and backpressure from either side holds the other (HTTP/2 flow control on the stream,
// the TCP window on the socket).

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
    forward(socket, stream);

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
