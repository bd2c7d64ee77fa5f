// The agent's one dialer: every connection it opens to a destination — an inbound tunnel stream's
// pod, a same-node delivery, a plaintext client's pod, a passthrough — starts here, so timeouts,
// cancellation and socket options are the same on every path.

import net from 'node:net';
import { connectUncaptured } from '../redirect/uncaptured.ts';
import type { SocketAddress } from './authority.ts';

export type TargetConnectOptions = {
  /** Give up (and answer 503) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Aborted when the tunnel stream goes away first. */
  signal?: AbortSignal;
  /** Source address to bind, e.g. to connect from the original client's address. */
  localAddress?: string;
  /**
   * Mark the socket so that the node's own capture lets it through (redirect/uncaptured.ts): a
   * connection to a pod on this node leaves through the output path, which the capture hooks.
   */
  uncaptured?: boolean;
};

export type TargetConnectResult = { ok: true; socket: net.Socket } | { ok: false; reason: string };

/**
 * Opens a TCP connection to the destination. The socket is half-open capable (a FIN from the
 * destination must not close our side) and has Nagle disabled (the tunnel adds latency enough).
 */
export function connectTarget(target: SocketAddress, options: TargetConnectOptions = {}): Promise<TargetConnectResult> {
  const { timeoutMs = 10_000, signal, localAddress, uncaptured = false } = options;
  return new Promise((resolve) => {
    let socket: net.Socket;
    try {
      socket = uncaptured ? connectUncaptured(target) : net.connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true, localAddress });
    } catch (e) {
      // The marked socket is made by the addon: EMFILE and its kin surface here, not as 'error'.
      return resolve({ ok: false, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    }
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

/** connectTarget for callers that want the socket or an error naming the target. */
export async function dialTarget(target: SocketAddress, options: TargetConnectOptions = {}): Promise<net.Socket> {
  const r = await connectTarget(target, options);
  if (!r.ok) throw Object.assign(new Error(`connect to ${target.ip}:${target.port}: ${r.reason}`), { code: r.reason });
  return r.socket;
}
