// Binding the agent's TCP ports so that two agent processes can hold them at once (an upgrade
// runs the new process beside the old one): SO_REUSEPORT on every listener. A port held by a
// process that did not set it (an agent from before this change) cannot be shared: the bind is
// retried until that process has exited, so that the upgrade from such a version completes
// (as a plain restart) instead of crash-looping the new agent.
import type { Server } from 'node:net';

export const BIND_RETRY_MS = 500;

export interface ListenOptions {
  host: string;
  port: number;
  backlog?: number;
}

export async function listenShared(server: Server, o: ListenOptions): Promise<void> {
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: o.host, port: o.port, backlog: o.backlog ?? 511, reusePort: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      await new Promise((r) => setTimeout(r, BIND_RETRY_MS));
    }
  }
}
