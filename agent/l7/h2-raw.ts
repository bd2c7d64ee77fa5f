// Test support: one h2c exchange written by hand (frames from agent/testing/h2-frames.ts) against
// the L7 path, for what Node's own client refuses to send and for frame-level fuzzing; of the
// answer only the frame types and the first response's :status are read.

import net from 'node:net';
import { FRAME, FrameReader, PREFACE, SETTINGS_ACK, frame, wantsAck, type ReceivedFrame } from '../testing/h2-frames.ts';

export { FLAG, FRAME, frame, headerBlock } from '../testing/h2-frames.ts';

/** The client preface and an empty SETTINGS frame. */
export const CLIENT_START = Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]);

export type RawH2Answer = { frames: ReceivedFrame[]; status: number | undefined; closed: boolean };

/**
 * Writes `bytes` on a new connection, acknowledges the server's SETTINGS (then writes
 * `afterSettings`), and collects frames until `waitMs` passes without data or the server closes.
 */
export function rawH2Exchange(port: number, bytes: Buffer, waitMs = 300, afterSettings?: Buffer): Promise<RawH2Answer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const reader = new FrameReader();
    const frames: RawH2Answer['frames'] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      timer.refresh();
      for (const f of reader.push(chunk)) {
        frames.push(f);
        if (wantsAck(f) && !socket.destroyed) {
          socket.write(SETTINGS_ACK);
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
