// Connections the agent opens itself must never be captured by its own rules: delivering a
// connection to a pod on this node leaves through the node's output path, which the node capture
// redirects to 15006 (rules.ts) — without the mark, the agent would capture its own delivery
// and refuse it as plaintext from the node. The mark must be on the socket before the SYN, so the
// socket is made by the addon and only then handed to Node.
import { isIPv6, Socket } from 'node:net';
import { markedSocket, type Address } from '../native/sockopt.ts';
import { BYPASS_MARK } from './rules.ts';

/** Starts a TCP connection to `target` that the node's capture lets through; like net.connect(). */
export function connectUncaptured(target: Address): Socket {
  const fd = markedSocket(isIPv6(target.ip) ? 6 : 4, BYPASS_MARK);
  const socket = new Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
  socket.setNoDelay(true);
  return socket.connect({ host: target.ip, port: target.port });
}
