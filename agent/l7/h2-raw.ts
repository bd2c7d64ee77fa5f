// Test support: HTTP/2 written by hand, for what Node's own client refuses to send (a singleton
// header twice, uppercase names, pseudo-headers out of place) and for frame-level fuzzing. HPACK is
// the literal-without-indexing form only, which every decoder must accept; of the answer only the
// frame types and the first response's :status are read.

import net from 'node:net';
import { H2_PREFACE } from './sniff.ts';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

function hpackInteger(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7, 0), bytes]);
}

/** A header block of literal fields without indexing, names and values as given (any case). */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

/** The client preface and an empty SETTINGS frame. */
export const CLIENT_START = Buffer.concat([H2_PREFACE, frame(FRAME.SETTINGS, 0, 0)]);

export type RawH2Answer = { frames: { type: number; flags: number; streamId: number; payload: Buffer }[]; status: number | undefined; closed: boolean };

/**
 * Writes `bytes` on a new connection, acknowledges the server's SETTINGS (then writes
 * `afterSettings`), and collects frames until `waitMs` passes without data or the server closes.
 */
export function rawH2Exchange(port: number, bytes: Buffer, waitMs = 300, afterSettings?: Buffer): Promise<RawH2Answer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buffered = Buffer.alloc(0);
    const frames: RawH2Answer['frames'] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      timer.refresh();
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        const f = { type: buffered.readUInt8(3), flags: buffered.readUInt8(4), streamId: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) };
        buffered = buffered.subarray(9 + length);
        frames.push(f);
        if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && !socket.destroyed) {
          socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
          // Sent once the server's settings (its stream limit, say) are acknowledged, so they apply.
          if (afterSettings) socket.write(afterSettings);
          afterSettings = undefined;
        }
      }
    });
    socket.on('end', () => (closed = true));
    socket.on('close', () => {
      clearTimeout(timer);
      const headers = frames.find((f) => f.type === FRAME.HEADERS);
      resolve({ frames, status: headers ? statusOf(headers.payload) : undefined, closed });
    });
    socket.write(bytes);
  });
}

/** HPACK static table entries 8-14 are :status 200, 204, 206, 304, 400, 404, 500. */
const STATIC_STATUS = [200, 204, 206, 304, 400, 404, 500];

/**
 * The :status of a server's first header block (its dynamic table is still empty): an indexed
 * static entry, or a literal with the :status name and a digits-only value (raw or Huffman).
 */
export function statusOf(block: Buffer): number | undefined {
  const first = block[0] ?? 0;
  if (first & 0x80) return STATIC_STATUS[(first & 0x7f) - 8];
  const index = first & 0x40 ? first & 0x3f : first & 0x0f;
  if (index < 8 || index > 14) return undefined;
  const lengthByte = block[1] ?? 0;
  const value = block.subarray(2, 2 + (lengthByte & 0x7f));
  return Number(lengthByte & 0x80 ? huffmanDigits(value) : value.toString('latin1'));
}

/** Huffman codes of '0'-'2' are 5 bits (0-2), of '3'-'9' 6 bits (0x19-0x1f); padding is 1s. */
function huffmanDigits(bytes: Buffer): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let out = '';
  for (let i = 0; i + 5 <= bits.length; ) {
    const five = parseInt(bits.slice(i, i + 5), 2);
    if (five <= 2) {
      out += String(five);
      i += 5;
      continue;
    }
    if (i + 6 > bits.length) break;
    const six = parseInt(bits.slice(i, i + 6), 2);
    if (six < 0x19 || six > 0x1f) break;
    out += String(six - 0x19 + 3);
    i += 6;
  }
  return out;
}
