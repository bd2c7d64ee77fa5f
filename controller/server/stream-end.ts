// Finishing a stream the controller is done with. Ending our side (with a body or trailers) does
// not close an HTTP/2 stream: the client must end its side too, and a client that never does
// would hold the stream open for good. After a short linger (enough for the client to read our
// last frames; an RST_STREAM sent earlier can overtake queued trailers) the stream is reset with
// NO_ERROR, which RFC 9113 section 8.1 allows once the response is complete.
import { constants as h2 } from 'node:http2';
import type { ServerHttp2Stream } from 'node:http2';

export const DEFAULT_LINGER_MS = 2_000;

export function closeAfterLinger(stream: ServerHttp2Stream, lingerMs = DEFAULT_LINGER_MS): void {
  if (stream.closed || stream.destroyed) return;
  const timer = setTimeout(() => {
    if (!stream.closed && !stream.destroyed) stream.close(h2.NGHTTP2_NO_ERROR);
  }, lingerMs);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}

/** A complete JSON answer, then linger. A stream whose headers already went out is reset instead. */
export function replyJson(stream: ServerHttp2Stream, status: number, body: unknown, lingerMs = DEFAULT_LINGER_MS, headers: Record<string, string> = {}): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond({ ...headers, [h2.HTTP2_HEADER_STATUS]: status, [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/json' });
  stream.end(JSON.stringify(body));
  closeAfterLinger(stream, lingerMs);
}
