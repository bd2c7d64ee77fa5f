// serveHttp(): the entry of the L7 path. The agent hands over the client side of an inbound
// connection whose port speaks HTTP and whose policy needs to see requests; this sniffs the
// protocol and lets the HTTP/1 or the HTTP/2 handler serve it.

import net from 'node:net';
import type { Duplex } from 'node:stream';
import { L7Connection } from './connection.ts';
import { serveHttp1 } from './http1.ts';
import { serveHttp2 } from './http2.ts';
import { sniffProtocol } from './sniff.ts';
import { noVectoredWrites } from './writev-guard.ts';
import type { L7Options, L7Session } from './types.ts';

/**
 * Serves HTTP on `client`: a net.Socket, or any Duplex (the stream of an HBONE tunnel). Each
 * request is authorized, then forwarded over one upstream connection opened with `options.dial`.
 */
export function serveHttp(client: Duplex, options: L7Options): L7Session {
  // A tunnel stream (an Http2Stream) needs the writev workaround; sockets do not.
  if (!(client instanceof net.Socket)) noVectoredWrites(client);
  const conn = new L7Connection(client, options);
  void sniffProtocol(client, conn.limits.headersTimeoutMs).then((protocol) => {
    if (conn.ended) return;
    if (protocol === 'h2') serveHttp2(conn);
    else if (protocol === 'http/1.1') serveHttp1(conn);
    else if (protocol === 'timeout') conn.close('request header timeout');
    // 'closed': the client went away before saying anything; the connection's close ends the session.
  });
  return conn;
}
