// Loads the sockopt addon (built by scripts/build-native.ts) and exposes it for net.Socket.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';

export const ADDON_PATH = new URL('../../dist/native/weft_sockopt.node', import.meta.url).pathname;

interface Addon {
  originalDst(fd: number): [string, number];
  setMark(fd: number, mark: number): void;
  markedSocket(family: 4 | 6, mark: number): number;
  trimHeap(): boolean;
}

let addon: Addon | undefined;
function load(): Addon {
  if (!addon) {
    if (!existsSync(ADDON_PATH)) throw Object.assign(new Error(`${ADDON_PATH} is missing: run "npm run build"`), { code: 'ADDON_MISSING' });
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
  }
  return addon;
}

function fdOf(socket: Socket): number {
  // libuv's TCP handle exposes its descriptor on Unix; there is no public API for it.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw Object.assign(new Error('socket has no file descriptor'), { code: 'NO_FD' });
  return fd;
}

export interface Address {
  ip: string;
  port: number;
}

/** Where a redirected TCP connection was going before nftables sent it to us. */
export function originalDst(socket: Socket): Address {
  const [ip, port] = load().originalDst(fdOf(socket));
  return { ip, port };
}

export function setMark(socket: Socket, mark: number): void {
  load().setMark(fdOf(socket), mark);
}

/** A new, unconnected TCP socket's descriptor with SO_MARK set: its first packet (the SYN) is
 * marked already, which setMark() on a Node socket, created inside connect(), cannot do. */
export function markedSocket(family: 4 | 6, mark: number): number {
  return load().markedSocket(family, mark);
}

/**
 * Gives the C heap's free pages back to the kernel (malloc_trim). Best effort: false when nothing
 * was released, the C library cannot, or the addon is missing (tests that never built it).
 */
export function trimHeap(): boolean {
  try {
    return load().trimHeap();
  } catch {
    return false;
  }
}
