// Test support: HTTP/2 frames written and read by hand, for the hostile-input tests and fuzz
// targets of the L7 path and the HBONE server. They need what Node's own client refuses to send
// (a singleton header twice, uppercase names, pseudo-headers out of place, frames for streams never
// opened). HPACK is the literal-without-indexing form only, which every decoder must accept.

import { H2_PREFACE } from '../l7/sniff.ts';

export const PREFACE = H2_PREFACE;

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export type HeaderField = readonly [name: string | Buffer, value: string | Buffer];

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
function hpackInteger(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function hpackString(s: string | Buffer): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

/** A header block of literal fields without indexing, names and values as given (RFC 7541 §6.2.2). */
export function headerBlock(fields: readonly HeaderField[]): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

export function headersFrame(streamId: number, fields: readonly HeaderField[], opts: { endStream?: boolean } = {}): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (opts.endStream ? FLAG.END_STREAM : 0), streamId, headerBlock(fields));
}

export function rstStream(streamId: number, code = 8 /* CANCEL */): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function settings(values: Record<number, number> = {}): Buffer {
  const entries = Object.entries(values);
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    payload.writeUInt16BE(Number(id), i * 6);
    payload.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

/** Splits a byte stream into frames, whatever the chunk boundaries. */
export class FrameReader {
  #buffer = Buffer.alloc(0);

  push(chunk: Buffer): ReceivedFrame[] {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    const out: ReceivedFrame[] = [];
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      out.push({ type: this.#buffer.readUInt8(3), flags: this.#buffer.readUInt8(4), streamId: this.#buffer.readUInt32BE(5) & 0x7fffffff, payload: this.#buffer.subarray(9, 9 + length) });
      this.#buffer = this.#buffer.subarray(9 + length);
    }
    return out;
  }
}

/** True for a SETTINGS frame that asks to be acknowledged. */
export const wantsAck = (f: ReceivedFrame): boolean => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0;

export const SETTINGS_ACK = frame(FRAME.SETTINGS, FLAG.ACK, 0);
