// The answers the L7 path writes itself: denials, malformed requests and upstream failures. They
// say what happened in a few words and nothing about the mesh's internals (no addresses, no
// identities, no stack), since the client may be anyone the port is open to.
//
// A denied gRPC call gets what a gRPC server would send: HTTP 200 and a trailers-only response with
// grpc-status 7 (PERMISSION_DENIED), so that the client's stub reports a status instead of a
// transport error.

import http2 from 'node:http2';
import type http from 'node:http';
import type { Duplex } from 'node:stream';

const { NGHTTP2_NO_ERROR } = http2.constants;

export const GRPC_PERMISSION_DENIED = 7;

const TEXT = 'text/plain; charset=utf-8';

export const deniedText = (reason: string): string => `access denied: ${reason}`;

/** grpc-message is percent-encoded: printable ASCII except '%' passes, everything else as UTF-8 escapes. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function grpcDeniedHeaders(reason: string): Record<string, string> {
  return {
    'content-type': 'application/grpc',
    'grpc-status': String(GRPC_PERMISSION_DENIED),
    'grpc-message': grpcMessage(deniedText(reason)),
  };
}

// HTTP/1.1 ---------------------------------------------------------------------------------------

/** A short text answer on a keep-alive connection; the connection stays usable. */
export function sendText1(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(text, 'utf8');
  res.writeHead(status, { 'content-type': TEXT, 'content-length': body.length });
  res.end(body);
}

export function sendDenied1(res: http.ServerResponse, reason: string, grpc: boolean): void {
  if (!grpc) return sendText1(res, 403, deniedText(reason));
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, { ...grpcDeniedHeaders(reason), 'content-length': 0 });
  res.end();
}

/**
 * An answer written straight to a connection that is no longer parsed as HTTP (an upgrade, a
 * CONNECT, a malformed request): it says `Connection: close` and ends the connection once written.
 */
export function sendRawAndClose(client: Duplex, status: number, statusText: string, text: string): void {
  if (client.destroyed || !client.writable) {
    client.destroy();
    return;
  }
  const body = Buffer.from(text, 'utf8');
  const head = `HTTP/1.1 ${status} ${statusText}\r\ncontent-type: ${TEXT}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  client.end(Buffer.concat([Buffer.from(head, 'latin1'), body]), () => client.destroy());
}

// HTTP/2 -----------------------------------------------------------------------------------------

export function sendText2(stream: http2.ServerHttp2Stream, status: number, text: string): void {
  afterUpload(stream, () => {
    if (stream.headersSent || stream.closed || stream.destroyed) return;
    const body = Buffer.from(text, 'utf8');
    stream.respond({ ':status': status, 'content-type': TEXT, 'content-length': body.length });
    stream.end(body);
  });
}

export function sendDenied2(stream: http2.ServerHttp2Stream, reason: string, grpc: boolean): void {
  if (!grpc) return sendText2(stream, 403, deniedText(reason));
  afterUpload(stream, () => {
    if (stream.headersSent || stream.closed || stream.destroyed) return;
    stream.respond({ ':status': 200, ...grpcDeniedHeaders(reason) }, { endStream: true });
  });
}

/** How much of a request body is read and dropped before answering, and for how long. */
const DRAIN_BYTES = 64 * 1024;
const DRAIN_MS = 1000;

/**
 * Answers a request the agent does not forward (a denial, a 400, an upstream failure) once its
 * body is in, read and dropped: HEADERS, then DATA with END_STREAM, as curl or a gRPC stub sends
 * a unary call. Answering at once and then ending the upload with RST_STREAM(NO_ERROR) is what
 * RFC 9113 8.1 allows, and clients must keep such a response; curl 7.88 does not when the reset
 * (or even the answer's END_STREAM) overtakes its own DATA: it fails with error 92 or waits
 * forever, about one call in four. So the early answer is kept for bodies beyond DRAIN_BYTES or
 * slower than DRAIN_MS, which a client must not make the agent read indefinitely: then the answer
 * is sent and the upload ended with RST_STREAM(NO_ERROR).
 */
function afterUpload(stream: http2.ServerHttp2Stream, answer: () => void): void {
  if (stream.endAfterHeaders || stream.readableEnded || stream.closed || stream.destroyed) return answer();
  let drained = 0;
  const finish = (): void => {
    clearTimeout(timer);
    stream.off('data', onData);
    stream.off('end', finish);
    stream.off('close', forget);
    answer();
    // Node sends the reset once the answer has been written (the writable side has finished).
    if (!stream.readableEnded && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_NO_ERROR);
  };
  const forget = (): void => {
    clearTimeout(timer);
    stream.off('data', onData);
    stream.off('end', finish);
  };
  const onData = (chunk: Buffer): void => {
    drained += chunk.length;
    if (drained > DRAIN_BYTES) finish();
  };
  const timer = setTimeout(finish, DRAIN_MS).unref();
  stream.on('data', onData);
  stream.once('end', finish);
  stream.once('close', forget);
  stream.resume();
}
