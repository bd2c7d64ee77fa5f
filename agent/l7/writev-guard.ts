// A workaround for a Node bug (seen on 20.20 and 24.21): a vectored write that mixes strings and
// Buffers into an Http2Stream can send freed memory. Http2Stream._writev hands the chunks to the
// native writev, which copies string chunks into a temporary store that is released while the
// HTTP/2 session still references it for the DATA frame; the bytes that reach the peer are
// whatever the allocator put there (the first 16 bytes of the chunk come out as heap pointers).
// Node's HTTP/1 server writes exactly that shape (the header block as a latin1 string, then the
// body as a Buffer, corked), so HTTP/1.1 served over an HBONE tunnel stream has its status lines
// corrupted. Buffer chunks are retained by the write request and are safe, so strings are turned
// into Buffers before the native call. Single (non-vectored) string writes take another path and
// are not affected.

import type { Duplex } from 'node:stream';

type WritevChunk = { chunk: unknown; encoding: string };

export function buffersOnlyWritev(stream: Duplex): void {
  if (typeof stream._writev !== 'function') return;
  const writev = stream._writev.bind(stream);
  stream._writev = (chunks: WritevChunk[], callback: (error?: Error | null) => void): void => {
    let converted: WritevChunk[] | undefined;
    for (let i = 0; i < chunks.length; i++) {
      const { chunk, encoding } = chunks[i] as WritevChunk;
      if (typeof chunk !== 'string') continue;
      converted ??= chunks.slice();
      converted[i] = { chunk: Buffer.from(chunk, encoding as BufferEncoding), encoding: 'buffer' };
    }
    writev((converted ?? chunks) as { chunk: unknown; encoding: BufferEncoding }[], callback);
  };
}
