// The agent's side of the CNI contract (api/cni.ts): HTTP/1.1 on a unix socket that only root
// can reach (mode 0600), answering the plugin by calling the injected Enroller. A malformed
// request is refused with 400 and a reason and costs other requests nothing.
//
// During an agent upgrade the new process takes the socket over (`takeOver`, unix-socket.ts): it
// renames its own socket over the path, so the plugin always finds a listener, and from then on
// every request goes to the new process; the old one finishes the requests it had and never
// removes the new one's socket.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createConnection } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  CNI_API_ERRORS,
  CNI_API_PATHS,
  CNI_MAX_BODY_BYTES,
  CniContractError,
  parseGcRequest,
  parsePodAddRequest,
  parsePodCheckRequest,
  parsePodDelRequest,
} from '../../api/cni.ts';
import type { CniApiErrorCode, ErrorBody } from '../../api/cni.ts';
import type { Enroller } from './enroller.ts';
import { OwnedSocketPath, listenOn } from '../unix-socket.ts';
import { CodedError } from '../../api/coded-error.ts';

export interface CniServerLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface CniServerOptions {
  socketPath: string;
  enroller: Enroller;
  log?: CniServerLog;
  /**
   * Replace a socket another agent process still listens on (the agent's start during an
   * upgrade), and keep the path ours while no successor takes it. Without it, a live socket is
   * refused with SOCKET_IN_USE, only a dead one is replaced, and closing unlinks the path.
   */
  takeOver?: boolean;
}

export interface CniServer {
  readonly socketPath: string;
  /** Removes a stale socket file (or takes a live one over), listens, restricts the socket to its owner. */
  listen(): Promise<void>;
  /**
   * Stops listening, lets requests in progress finish (up to `graceMs`, default 0) and drops the
   * rest, removes the socket file (with takeOver: only if it is still ours).
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

export class CniServerError extends CodedError<'SOCKET_IN_USE' | 'SOCKET_PATH_OCCUPIED'> {
  override readonly name = 'CniServerError';
}

type Reply = { status: number; body: unknown };

interface Route {
  method: 'GET' | 'POST';
  /** Takes the parsed JSON body (undefined for GET); throws CniContractError when malformed. */
  handle(body: unknown): Promise<Reply>;
}

const SOCKET_MODE = 0o600;

export function createCniServer(opts: CniServerOptions): CniServer {
  const { enroller, socketPath } = opts;
  const log = opts.log ?? stderrLog;
  const routes = buildRoutes(enroller);
  let server: Server | null = null;
  let owned: OwnedSocketPath | null = null;

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const path = (req.url ?? '').split('?')[0] ?? '';
    const route = routes.get(path);
    let reply: Reply;
    if (route === undefined) {
      reply = failure('NOT_FOUND', `no such endpoint: ${path}`);
    } else if (req.method !== route.method) {
      res.setHeader('allow', route.method);
      reply = failure('METHOD_NOT_ALLOWED', `${path} takes ${route.method}`);
    } else {
      reply = await serve(req, route);
    }
    send(res, reply);
    const error = (reply.body as Partial<ErrorBody>).error;
    if (error === undefined) return; // success, or a status answer (503 "not ready" is not a failure)
    const fields = { method: req.method, path, status: reply.status, code: error.code, error: error.message };
    if (reply.status >= 500) log.error('cni request failed', { ...fields, ms: Math.round(performance.now() - started) });
    else log.warn('cni request refused', fields);
  };

  const serve = async (req: IncomingMessage, route: Route): Promise<Reply> => {
    let body: unknown;
    if (route.method === 'POST') {
      let raw: string | null;
      try {
        raw = await readBody(req);
      } catch {
        return failure('BAD_REQUEST', 'request body interrupted');
      }
      if (raw === null) return failure('PAYLOAD_TOO_LARGE', `body larger than ${CNI_MAX_BODY_BYTES} bytes`);
      try {
        body = JSON.parse(raw);
      } catch {
        return failure('BAD_REQUEST', 'body is not JSON');
      }
    }
    try {
      return await route.handle(body);
    } catch (err) {
      if (err instanceof CniContractError) return failure('BAD_REQUEST', err.message);
      const code = (err as { code?: unknown }).code;
      // "Cannot decide yet" is not a failure: the plugin decides from the API server instead.
      if (code === 'NOT_READY') return failure('NOT_READY', (err as Error).message);
      return failure('ENROLLER_FAILED', `${typeof code === 'string' ? `${code}: ` : ''}${(err as Error).message}`);
    }
  };

  return {
    socketPath,
    async listen() {
      const create = (): Server => {
        const s = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
          onRequest(req, res).catch((err: unknown) => {
            log.error('cni request handler crashed', { error: (err as Error).message });
            if (!res.headersSent) send(res, failure('ENROLLER_FAILED', 'internal error'));
            else res.destroy();
          });
        });
        s.on('clientError', (err, socket) => {
          // Not HTTP at all (or broken framing): answer once and drop only that connection.
          if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
          else socket.destroy();
          log.warn('cni connection refused', { error: err.message });
        });
        return s;
      };
      if (opts.takeOver) {
        // Narrowed to its owner before the rename makes it reachable: whoever can connect can
        // enrol or release pods.
        owned = new OwnedSocketPath({
          path: socketPath,
          mode: SOCKET_MODE,
          create,
          onRebound: () => log.warn('cni socket was removed (by an older agent exiting?); listening again', { socketPath }),
        });
        await owned.listen();
      } else {
        await clearStaleSocket(socketPath);
        const s = create();
        await listenOn(s, socketPath);
        try {
          // The socket is created with the process umask; anyone who can connect can enrol or
          // release pods, so narrow it to the owner (root) before announcing readiness.
          await chmod(socketPath, SOCKET_MODE);
        } catch (err) {
          await new Promise<void>((resolve) => s.close(() => resolve()));
          throw err;
        }
        server = s;
      }
      log.info('cni server listening', { socketPath });
    },
    async close(options = {}) {
      const graceMs = options.graceMs ?? 0;
      if (owned) {
        const o = owned;
        owned = null;
        return o.close({ graceMs });
      }
      const s = server;
      server = null;
      if (s === null) return;
      // close() drops idle connections at once; requests in progress get graceMs. Closing a unix
      // listener unlinks its path (libuv).
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      const timer = setTimeout(() => s.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

function buildRoutes(enroller: Enroller): Map<string, Route> {
  const notReady = (): Reply | null => {
    const r = enroller.ready();
    return r.ready ? null : failure('NOT_READY', r.reason);
  };
  const routes: [string, Route][] = [
    [CNI_API_PATHS.podAdd, {
      method: 'POST',
      handle: async (b) => {
        const req = parsePodAddRequest(b);
        return notReady() ?? ok(await enroller.enrol(req));
      },
    }],
    [CNI_API_PATHS.podCheck, {
      method: 'POST',
      handle: async (b) => {
        const req = parsePodCheckRequest(b);
        return notReady() ?? ok(await enroller.check(req));
      },
    }],
    [CNI_API_PATHS.podDel, {
      method: 'POST',
      handle: async (b) => ok(await enroller.release(parsePodDelRequest(b))),
    }],
    [CNI_API_PATHS.gc, {
      method: 'POST',
      handle: async (b) => ok(await enroller.gc(parseGcRequest(b).validAttachments)),
    }],
    [CNI_API_PATHS.status, {
      method: 'GET',
      handle: () => {
        const r = enroller.ready();
        return Promise.resolve({ status: r.ready ? 200 : 503, body: r });
      },
    }],
  ];
  return new Map(routes);
}

const ok = (body: unknown): Reply => ({ status: 200, body });

function failure(code: CniApiErrorCode, message: string): Reply {
  const body: ErrorBody = { error: { code, message } };
  return { status: CNI_API_ERRORS[code], body };
}

function send(res: ServerResponse, reply: Reply): void {
  const payload = JSON.stringify(reply.body);
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

/** The body as text, or null when it exceeds the contract's limit. */
async function readBody(req: IncomingMessage): Promise<string | null> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > CNI_MAX_BODY_BYTES) {
    req.resume();
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > CNI_MAX_BODY_BYTES) {
      req.resume();
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A socket file left by an agent that died is removed; a socket someone still listens on, or a
 * path that is not a socket at all, is not ours to remove.
 */
async function clearStaleSocket(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let stat;
  try {
    stat = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) throw new CniServerError('SOCKET_PATH_OCCUPIED', `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve, reject) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve(false);
      else reject(err);
    });
  });
  if (live) throw new CniServerError('SOCKET_IN_USE', `another process is listening on ${path}`);
  await unlink(path);
}

const stderrLog: CniServerLog = {
  info: (msg, fields) => process.stderr.write(JSON.stringify({ level: 'info', component: 'cni-server', msg, ...fields }) + '\n'),
  warn: (msg, fields) => process.stderr.write(JSON.stringify({ level: 'warn', component: 'cni-server', msg, ...fields }) + '\n'),
  error: (msg, fields) => process.stderr.write(JSON.stringify({ level: 'error', component: 'cni-server', msg, ...fields }) + '\n'),
};
