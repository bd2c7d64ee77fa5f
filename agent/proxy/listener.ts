// The life of a capture listener (15001, 15006, 15008), shared by the three directions.
//
// Listeners bind with SO_REUSEPORT (listen.ts): during an upgrade the new agent process binds the
// same ports while the old one still runs, and the kernel spreads new connections over both until
// the old one stops accepting. Established connections are unaffected either way: the kernel finds their
// sockets by the 4-tuple, and their conntrack entries keep the redirect's translation.
//
// Draining stops accepting at once (new connections go to the other process) and waits for the
// accepted connections to end; closing resets whatever is still open (the drain deadline passed).
import type { Server, Socket } from 'node:net';
import { listenShared } from '../listen.ts';

export class CaptureListener {
  readonly #server: Server;
  readonly #open = new Set<Socket>();
  #stopped: Promise<void> | undefined;

  constructor(server: Server) {
    this.#server = server;
    const open = this.#open;
    // One listener function for every socket (the emitter is `this`), not a closure per connection.
    function untrack(this: Socket): void {
      open.delete(this);
    }
    server.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.once('close', untrack);
    });
  }

  /** Resolves once bound; waits while a process that does not share the port holds it (listen.ts). */
  listen(host: string, port: number): Promise<void> {
    return listenShared(this.#server, { host, port, backlog: 4096 });
  }

  /** Stops accepting; resolves once every accepted connection has ended. */
  drain(): Promise<void> {
    // net.Server emits 'close' only when the last accepted connection has closed.
    this.#stopped ??= new Promise<void>((resolve) => this.#server.close(() => resolve()));
    return this.#stopped;
  }

  /** Stops accepting, resets the connections still open, resolves once they are gone. */
  async close(): Promise<void> {
    const stopped = this.drain();
    for (const socket of this.#open) socket.resetAndDestroy();
    await stopped;
  }
}
