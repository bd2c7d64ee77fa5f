// HTTP/2 settings shared by the HBONE client and server.
//
// Flow control dominates tunnel throughput: with the protocol's 64 KiB default window a single
// stream stalls after 64 KiB per round trip. 4 MiB windows (stream and session) carry one stream at
// 4 MiB per round trip, 33 Gbit/s at 1 ms, far above what an agent moves per core.
//
// Not more: Node's HTTP/2 session stops reading its socket while a write of its own is in
// progress (its defence against peers that never read), so two agents that both have more to send
// than the kernel buffers between them hold (~5 MB on loopback here: 4 MB of send buffer, ~1 MB of
// receive buffer) each wait for the other to read, for good. The session window bounds what one
// side can have in flight unacknowledged: with 16 MiB, 5 tunnels of 3 MB echoed both ways through
// one pooled connection stalled every time (duplex-bulk.test.ts); with 4 or 8 MiB, up to 16 tunnels
// of 8 MB did not. 8 MiB gave 4.18-4.27 Gbit/s and 4 MiB 3.43-4.29 against 4.14-4.63 with 16 MiB
// (bench/hbone-micro.ts --paths agent --megabytes 256, 3 interleaved rounds, load 0.3-0.6); 4 MiB
// keeps what is in flight below those buffers rather than relying on the test's luck.

import type http2 from 'node:http2';

export const HBONE_PORT = 15008;
export const HBONE_ALPN = 'h2';

/** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) and the session window. */
export const WINDOW_SIZE = 4 * 1024 * 1024;

/** Largest DATA frame we accept. Bigger frames mean fewer frame headers and callbacks per MiB. */
export const MAX_FRAME_SIZE = 64 * 1024;

/** Streams a server lets one client connection carry at once. */
export const SERVER_MAX_CONCURRENT_STREAMS = 1000;

/**
 * The largest request header list the server accepts (uncompressed, RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE),
 * and the most fields in it. A CONNECT carries `:method`, `:authority`, and a few tracing headers
 * (`baggage`, `traceparent`) well under 1 KiB; Node's defaults (64 KiB, 128 fields) would let each
 * of a thousand concurrent streams hold 64 KiB of someone else's bytes.
 */
export const SERVER_MAX_HEADER_LIST_SIZE = 16 * 1024;
export const SERVER_MAX_HEADER_FIELDS = 64;

/**
 * nghttp2 counts buffered outbound data and unread inbound data against this (in MiB); with
 * 16 MiB windows the default of 10 would refuse new streams on a busy connection.
 */
export const MAX_SESSION_MEMORY_MB = 256;

export const localSettings: http2.Settings = {
  initialWindowSize: WINDOW_SIZE,
  maxFrameSize: MAX_FRAME_SIZE,
  enablePush: false,
};
