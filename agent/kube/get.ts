// One GET to the API server over node:https with the agent's current token: the answer to a list
// (read whole, bounded) or a watch (a stream the caller reads). No client library: the agent is
// one bundled file whose memory matters, and it makes two kinds of request.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { KubeAccess } from './access.ts';
import { KubeApiError } from './errors.ts';

export interface GetOptions {
  /** What the request is for, in messages ("list DaemonSet ns/name"): stable across retries. */
  what: string;
  /** Aborts the request, and the response stream once it has begun. */
  signal: AbortSignal;
  /** Longest wait for the response headers. */
  headersTimeoutMs: number;
  /** DELETE only for the uninstall hook (agent/pre-delete.ts); its body, DeleteOptions. */
  method?: 'GET' | 'DELETE';
  body?: string;
}

/** Resolves with the response once the API server answers 200; any other answer is a KubeApiError. */
export async function openGet(access: KubeAccess, path: string, opts: GetOptions): Promise<IncomingMessage> {
  if (access.server === null) throw new KubeApiError('KUBE_CONFIG', 'no API server: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT name none');
  let token: string;
  let ca: Buffer;
  try {
    [token, ca] = await Promise.all([readFile(access.tokenFile, 'utf8').then((t) => t.trim()), readFile(access.caFile)]);
  } catch (e) {
    // The message names the file, never what is in it.
    throw new KubeApiError('KUBE_CREDENTIALS', `reading the API credentials: ${(e as Error).message}`, { cause: e });
  }
  if (!/^[\x21-\x7e]+$/.test(token)) throw new KubeApiError('KUBE_CREDENTIALS', `${access.tokenFile} does not hold a bearer token`);
  const server = access.server;

  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server), {
      method: opts.method ?? 'GET',
      ca,
      // A connection of its own: a watch holds it for minutes, and nothing else would reuse it.
      agent: false,
      signal: opts.signal,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(opts.body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(opts.body) } : {}) },
    });
    const timer = setTimeout(() => req.destroy(new KubeApiError('KUBE_TIMEOUT', `${opts.what}: no answer within ${opts.headersTimeoutMs} ms`)), opts.headersTimeoutMs);
    // A watch is quiet between events: keepalive probes notice a peer that vanished without a reset.
    req.on('socket', (s) => s.setKeepAlive(true, 30_000));
    req.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e instanceof KubeApiError) return reject(e);
      const why = e.name === 'AbortError' ? 'aborted' : (e.code ?? e.message);
      reject(new KubeApiError('KUBE_UNREACHABLE', `${opts.what}: ${why}`, { cause: e }));
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      // A DELETE that must wait for finalizers (foreground) may answer 202.
      if (res.statusCode === 200 || (res.statusCode === 202 && opts.method === 'DELETE')) return resolve(res);
      const status = res.statusCode ?? 0;
      void statusMessage(res).then((m) => reject(new KubeApiError('KUBE_HTTP', `${opts.what}: HTTP ${status}${m ? `: ${m}` : ''}`, { status })));
    });
    req.end(opts.body);
  });
}

/** The whole body as JSON; more than `maxBytes` is refused rather than buffered. */
export async function readJson(res: IncomingMessage, what: string, maxBytes = 4 << 20): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res) {
      const chunk = c as Buffer;
      size += chunk.length;
      if (size > maxBytes) throw new KubeApiError('KUBE_DECODE', `${what}: the answer is longer than ${maxBytes} bytes`);
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof KubeApiError) throw e;
    throw new KubeApiError('KUBE_UNREACHABLE', `${what}: the answer was cut: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new KubeApiError('KUBE_DECODE', `${what}: the answer is not JSON`);
  }
}

/** The `message` of a Status body (what the API server says is wrong), shortened. */
async function statusMessage(res: IncomingMessage): Promise<string> {
  try {
    const body = (await readJson(res, 'status', 64 << 10)) as { message?: unknown } | null;
    return typeof body?.message === 'string' ? body.message.slice(0, 300) : '';
  } catch {
    return '';
  }
}
