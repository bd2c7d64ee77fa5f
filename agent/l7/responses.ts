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
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  const body = Buffer.from(text, 'utf8');
  stream.respond({ ':status': status, 'content-type': TEXT, 'content-length': body.length });
  stream.end(body);
  stopUpload(stream);
}

export function sendDenied2(stream: http2.ServerHttp2Stream, reason: string, grpc: boolean): void {
  if (!grpc) return sendText2(stream, 403, deniedText(reason));
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  stream.respond({ ':status': 200, ...grpcDeniedHeaders(reason) }, { endStream: true });
  stopUpload(stream);
}

/**
 * A request whose body is still coming gets RST_STREAM(NO_ERROR) once the answer is written
 * (RFC 9113 8.1): the client stops sending and keeps the response. Node sends the reset after the
 * stream's writable side has finished.
 */
export function stopUpload(stream: http2.ServerHttp2Stream): void {
  if (!stream.endAfterHeaders && !stream.closed) stream.close(NGHTTP2_NO_ERROR);
}
