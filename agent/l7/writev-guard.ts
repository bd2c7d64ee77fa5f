// A workaround for a Node bug (seen on 20.20 and 24.21): a vectored write into an Http2Stream can
// send freed memory. Node's HTTP/1 machinery corks the header block (a latin1 string) with the
// body (a Buffer), so HTTP/1.1 served over, or sent into, an HBONE tunnel stream goes through
// Http2Stream._writev, and the bytes that reach the peer can be whatever the allocator put there:
// the first 16 bytes of a chunk come out as two heap pointers (a freed malloc chunk's list links).
// With string chunks it happened on every response; turning the strings into Buffers first (this
// guard's first form) left it to garbage collection — with the chart's small young generation, a
// response in a few hundred under load, and then under a stopped trace collector's GC pressure
// on real nodes. Single writes are not affected, so vectored writes are switched off for such a
// stream: Writable then hands each chunk to _write. writev-gc.test.ts reproduces both.

import type { Duplex } from 'node:stream';

export function noVectoredWrites(stream: Duplex): void {
  if (typeof stream._writev !== 'function') return;
  // Writable looks the method up at each flush: without it, buffered chunks go one by one.
  (stream as { _writev: Duplex['_writev'] | null })._writev = null;
}
