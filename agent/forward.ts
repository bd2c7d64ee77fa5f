// One direction of a relay: from -> to with backpressure (to's buffer full pauses from), and
// from's end, a FIN, ends to, so a FIN travels as a FIN (half-close). What pipe() does for this,
// without the listeners it adds per connection. Used by the tunnel splice and the plain relay.
import type { Duplex } from 'node:stream';

export function forward(from: Duplex, to: Duplex): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}
