// Moves bytes between the downstream connection and its upstream (a tunnel stream or a plain
// socket), carrying half-close and resets across, and reports once when both sides are done.
// Byte counts come from the socket's own counters at close: no per-chunk work on the data path.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { forward } from '../forward.ts';

export interface RelayOutcome {
  /** Bytes received from the downstream (connection initiator). */
  received: number;
  /** Bytes sent to the downstream. */
  sent: number;
  durationMs: number;
  /** Empty when both sides closed cleanly; otherwise the first error. */
  error: string;
}

export const peerOf = (s: Socket): string => `${s.remoteAddress}:${s.remotePort}`;

/** Connections with no data either way for this long are reset (both sides). */
export const DEFAULT_IDLE_TIMEOUT_MS = 60 * 60 * 1000;

export function relay(down: Socket, up: Duplex, done: (o: RelayOutcome) => void, idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS): void {
  const started = performance.now();
  let error = '';
  let open = 2;
  const finish = () => {
    if (--open > 0) return;
    done({ received: down.bytesRead, sent: down.bytesWritten, durationMs: performance.now() - started, error });
  };
  const fail = (side: string) => (e: Error) => {
    if (!error) error = `${side}: ${(e as NodeJS.ErrnoException).code ?? e.message}`;
    // A reset on one side becomes a reset on the other: never a clean FIN that hides the failure.
    if (!down.destroyed) down.resetAndDestroy();
    if (!up.destroyed) up.destroy();
  };
  down.on('error', fail('downstream'));
  up.on('error', fail('upstream'));
  down.once('close', finish);
  up.once('close', finish);
  forward(down, up);
  forward(up, down);
  if (idleTimeoutMs > 0) {
    // The timer restarts on every read and write of the downstream socket, i.e. both directions.
    down.setTimeout(idleTimeoutMs, () => fail('idle')(new Error('idle timeout')));
  }
}
