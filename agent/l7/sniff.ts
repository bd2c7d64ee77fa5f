// Which HTTP a connection speaks, from its first bytes: a client that starts with the HTTP/2 client
// preface speaks h2c (prior knowledge, which is how gRPC clients talk plaintext); anything else is
// taken as HTTP/1.x and left to the HTTP/1 parser to accept or refuse.
//
// The bytes read are pushed back (unshift) and the stream is left paused, so the protocol server
// the connection is handed to reads them first: Node's HTTP/2 session picks up what is buffered
// on the stream, and the HTTP/1 server reads it once resumed.

import type { Duplex } from 'node:stream';

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type SniffedProtocol = 'h2' | 'http/1.1' | 'closed' | 'timeout';

/**
 * `timeoutMs` (0: none) runs from the first byte: a client that starts the preface and stalls would
 * otherwise hold the connection until the idle timeout, before any header timer could start.
 */
export function sniffProtocol(client: Duplex, timeoutMs = 0): Promise<SniffedProtocol> {
  return new Promise((resolve) => {
    let seen: Buffer | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (protocol: SniffedProtocol): void => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onGone);
      client.off('close', onGone);
      client.pause();
      if (seen && protocol !== 'closed') client.unshift(seen);
      resolve(protocol);
    };
    const onData = (chunk: Buffer): void => {
      seen = seen ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(seen.length, H2_PREFACE.length);
      const prefaceSoFar = seen.compare(H2_PREFACE, 0, n, 0, n) === 0;
      // A partial preface says nothing yet; wait for the rest.
      if (prefaceSoFar && seen.length < H2_PREFACE.length) {
        if (timeoutMs > 0) timer ??= setTimeout(() => finish('timeout'), timeoutMs).unref();
        return;
      }
      finish(prefaceSoFar ? 'h2' : 'http/1.1');
    };
    const onGone = (): void => finish('closed');
    client.on('data', onData);
    client.once('end', onGone);
    client.once('close', onGone);
  });
}
