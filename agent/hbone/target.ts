// Connecting to the destination of an inbound tunnel stream: the default "connect" step an inbound
// handler runs once policy has allowed the stream.

import net from 'node:net';
import type { SocketAddress } from './authority.ts';

export type TargetConnectOptions = {
  /** Give up (and answer 503) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Aborted when the tunnel stream goes away first. */
  signal?: AbortSignal;
  /** Source address to bind, e.g. to connect from the original client's address. */
  localAddress?: string;
};

export type TargetConnectResult = { ok: true; socket: net.Socket } | { ok: false; reason: string };

/**
 * Opens a TCP connection to the destination. The socket is half-open capable (a FIN from the
 * destination must not close our side) and has Nagle disabled (the tunnel adds latency enough).
 */
export function connectTarget(target: SocketAddress, options: TargetConnectOptions = {}): Promise<TargetConnectResult> {
  const { timeoutMs = 10_000, signal, localAddress } = options;
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true, localAddress });
    const done = (result: TargetConnectResult): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const onConnect = (): void => done({ ok: true, socket });
    const onError = (err: NodeJS.ErrnoException): void => done({ ok: false, reason: err.code ?? err.message });
    const onAbort = (): void => done({ ok: false, reason: 'ABORTED' });
    const timer = setTimeout(() => done({ ok: false, reason: 'ETIMEDOUT' }), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', onError);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
