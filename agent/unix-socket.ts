// Unix sockets that a newer agent process takes over from an older one on the same node (the
// CNI socket, the agent socket).
//
// The new process binds at a private path and renames it over the shared one: rename() is atomic,
// so a client connecting at any moment reaches the old listener or the new one, never nothing.
// Two facts shape the rest:
// - libuv unlinks the path a socket was bound at when it closes it, whoever owns that path by
//   then. Binding at the private path keeps our own close from removing a successor's socket.
// - An older agent that bound the shared path directly (a version from before this change) does
//   remove ours when it exits. So the path is watched: if it disappears, it is bound again. A path
//   that names another process's socket (a successor's) is left alone.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rename, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { CodedError } from '../api/coded-error.ts';

export class UnixSocketError extends CodedError<'SOCKET_PATH_OCCUPIED'> {
  override readonly name = 'UnixSocketError';
}

export interface OwnedSocketPathOptions {
  path: string;
  /** File mode, set before the socket becomes reachable at `path`. */
  mode: number;
  /** Makes a server; called again for each rebind. */
  create: () => Server;
  /** How often the path is checked. Default 2 s. */
  checkEveryMs?: number;
  /** Called after the path was found missing and bound again. */
  onRebound?: () => void;
}

export class OwnedSocketPath {
  readonly #o: OwnedSocketPathOptions;
  readonly #servers: Server[] = [];
  #ino = -1;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(o: OwnedSocketPathOptions) {
    this.#o = o;
  }

  get path(): string {
    return this.#o.path;
  }

  /** Binds, replacing whatever socket is at the path; a path that is not a socket is refused. */
  async listen(): Promise<void> {
    await this.#bind();
    this.#timer = setInterval(() => (this.#checking = this.#check()), this.#o.checkEveryMs ?? 2000);
    this.#timer.unref();
  }

  /** True while the path names this process's socket. */
  async ours(): Promise<boolean> {
    try {
      return (await lstat(this.#o.path)).ino === this.#ino;
    } catch {
      return false;
    }
  }

  /**
   * Stops listening: requests in progress get `graceMs`, then their connections are dropped.
   * Removes the path only if it still names our socket.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#checking;
    await Promise.all(
      this.#servers.map(async (s) => {
        const closed = new Promise<void>((resolve) => s.close(() => resolve()));
        const timer = setTimeout(() => s.closeAllConnections(), options.graceMs ?? 0);
        await closed;
        clearTimeout(timer);
      }),
    );
    if (await this.ours()) await unlink(this.#o.path).catch(() => {});
  }

  async #bind(): Promise<void> {
    const { path, mode } = this.#o;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const existing = await lstat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (existing && !existing.isSocket()) throw new UnixSocketError('SOCKET_PATH_OCCUPIED', `${path} exists and is not a socket`);
    // Not the pid: agents in containers are all pid 1, and the old one unlinks its own staging
    // name when it closes.
    const staging = `${path}.${randomBytes(4).toString('hex')}.new`;
    const server = this.#o.create();
    await listenOn(server, staging);
    try {
      await chmod(staging, mode);
      const { ino } = await lstat(staging);
      await rename(staging, path);
      this.#ino = ino;
      this.#servers.push(server);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
  }

  async #check(): Promise<void> {
    const missing = await lstat(this.#o.path).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
    );
    if (!missing || this.#closed) return;
    try {
      await this.#bind();
      this.#o.onRebound?.();
    } catch {
      // Tried again at the next check.
    }
  }
}

/** True when a process listens at `path` (a connection is accepted); false for no file or a dead socket. */
/** Listens on the unix socket `path`; rejects with the listen error (EADDRINUSE, EACCES, ...). */
export function listenOn(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function someoneListens(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    // A unix connect completes or fails at once; no answer at all counts as nobody.
    const timer = setTimeout(() => {
      probe.destroy();
      resolve(false);
    }, timeoutMs);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
