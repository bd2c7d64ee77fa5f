// One HTTP/1.1 request to the node agent over its unix socket, bounded by a deadline. The caller
// learns either what the agent answered or that the agent could not be reached in time; which
// transport failure it was is detail for the log, not for control flow.
//
// Written on node:net rather than node:http on purpose: in a fresh process, loading and first
// use of Node's HTTP client cost ~15-20 ms more than this, and this process lives for one request
// (measured; see cni-plugin/README.md). The agent's server is ordinary node:http; the request is
// `Connection: close`, so the answer is everything until EOF and needs no incremental parser.
import { createConnection } from 'node:net';
import { CNI_MAX_BODY_BYTES } from '../api/cni.ts';
import type { CniApiPath } from '../api/cni.ts';

export type AgentReply =
  /** The agent answered. `body` is the parsed JSON, or undefined when it was not JSON. */
  | { kind: 'answer'; status: number; body: unknown }
  /** No answer: no socket, connection refused, timeout, connection dropped mid-answer. */
  | { kind: 'unavailable'; reason: string };

export interface AgentCall {
  socketPath: string;
  method: 'GET' | 'POST';
  path: CniApiPath;
  body?: unknown;
  timeoutMs: number;
}

/** Status line, headers and blank line: generous for the agent's few headers. */
const MAX_HEAD_BYTES = 16 * 1024;

export function callAgent(call: AgentCall): Promise<AgentReply> {
  return new Promise((resolve) => {
    const payload = call.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(call.body));
    const head =
      `${call.method} ${call.path} HTTP/1.1\r\nhost: weft-agent\r\nconnection: close\r\n` +
      (call.body === undefined ? '' : `content-type: application/json\r\ncontent-length: ${payload.length}\r\n`) +
      '\r\n';
    const socket = createConnection(call.socketPath);
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (reply: AgentReply): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    };
    const timer = setTimeout(() => settle({ kind: 'unavailable', reason: `no answer within ${call.timeoutMs} ms` }), call.timeoutMs);

    // write(), not end(): Node's HTTP server drops a connection whose client half-closes before
    // the answer is ready, and enrolment takes a few milliseconds. The server closes after
    // answering (`connection: close`).
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from(head, 'latin1'), payload])));
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > CNI_MAX_BODY_BYTES + MAX_HEAD_BYTES) {
        settle({ kind: 'unavailable', reason: 'answer larger than the contract allows' });
        return;
      }
      chunks.push(chunk);
    });
    socket.on('end', () => settle(parseResponse(Buffer.concat(chunks))));
    socket.on('error', (err: NodeJS.ErrnoException) => settle({ kind: 'unavailable', reason: `${err.code ?? 'error'}: ${err.message}` }));
  });
}

/** A complete HTTP/1.1 response with a Content-Length body, as the agent's server sends. */
export function parseResponse(raw: Buffer): AgentReply {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) return { kind: 'unavailable', reason: 'connection closed before a complete answer' };
  const lines = raw.subarray(0, headEnd).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (status === null) return { kind: 'unavailable', reason: 'answer is not HTTP/1.1' };
  let length: number | null = null;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') length = /^\d+$/.test(value) ? Number(value) : NaN;
    if (name === 'transfer-encoding') return { kind: 'unavailable', reason: `unsupported transfer-encoding: ${value}` };
  }
  const body = raw.subarray(headEnd + 4);
  if (length !== null && (Number.isNaN(length) || body.length < length)) {
    return { kind: 'unavailable', reason: 'connection closed before the whole answer arrived' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.subarray(0, length ?? body.length).toString('utf8'));
  } catch {
    parsed = undefined;
  }
  return { kind: 'answer', status: Number(status[1]), body: parsed };
}
