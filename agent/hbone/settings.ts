// HTTP/2 settings shared by the HBONE client and server.
//
// Flow control dominates tunnel throughput: with the protocol's 64 KiB default window a single
// stream stalls after 64 KiB per round trip. 16 MiB windows (stream and session) let one stream run
// at link speed across a node-to-node RTT, as measured before any code existed (DESIGN.md).

import type http2 from 'node:http2';

export const HBONE_PORT = 15008;
export const HBONE_ALPN = 'h2';

/** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) and the session window. */
export const WINDOW_SIZE = 16 * 1024 * 1024;

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
