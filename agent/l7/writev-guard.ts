// A workaround for a Node bug (seen on 20.20 and 24.21): a vectored write into an Http2Stream can
// send freed memory. Node's HTTP/1 machinery corks the header block (a latin1 string) with the
// body (a Buffer), so HTTP/1.1 served over, or sent into, an HBONE tunnel stream goes through
// Http2Stream._writev, and the bytes that reach the peer can be whatever the allocator put there:
// the first 16 bytes of a chunk come out as two heap pointers (a freed malloc chunk's list links).
// With string chunks it happened on every response; turning the strings into Buffers first (this
// guard's first form) left it to garbage collection — with the chart's small young generation, a
// response in a few hundred under load, and then under a stopped trace collector's GC pressure
// on real nodes. Single writes are not affected. writev-gc.test.ts reproduces both.
//
// So such a stream never writes vectored: what Writable would hand to _writev is copied into one
// Buffer (at most BATCH bytes each; a larger chunk goes alone) and written with _write, which
// keeps its Buffer alive until the write completes. Handing each chunk to _write instead (this
// guard's second form) was safe but made every small piece its own DATA frame and TLS record: an
// HTTP/2 session routed through a tunnel stream writes a frame header and its payload as separate
// chunks, and its agent spent about twice the CPU per gRPC call for it.

import type { Duplex } from 'node:stream';

/** Chunks are copied together up to this many bytes per write. */
const BATCH = 64 * 1024;

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };

export function noVectoredWrites(stream: Duplex): void {
  if (typeof stream._writev !== 'function') return;
  const write = (data: Buffer, cb: (err?: Error | null) => void) => stream._write(data, 'buffer' as BufferEncoding, cb);
  stream._writev = (chunks: Chunk[], cb: (err?: Error | null) => void): void => {
    const batches: Buffer[] = [];
    let pending: Buffer[] = [];
    let size = 0;
    const flush = () => {
      if (pending.length > 0) batches.push(pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, size));
      pending = [];
      size = 0;
    };
    for (const { chunk, encoding } of chunks) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
      if (size > 0 && size + b.length > BATCH) flush();
      pending.push(b);
      size += b.length;
    }
    flush();
    let i = 0;
    const next = (err?: Error | null): void => {
      if (err || i === batches.length) return cb(err);
      write(batches[i++] as Buffer, next);
    };
    next();
  };
}
