// One probe attempt, as the kubelet's probers make it: httpGet and tcpSocket from the kubelet
// itself (in the node's network namespace) to the pod's IP, exec inside the pod's namespace. Every
// attempt ends in an outcome with the message the kubelet would put in an "Unhealthy" event.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { run } from './exec.ts';

export type ProbeAction =
  | { kind: 'http'; scheme: 'HTTP' | 'HTTPS'; host: string; port: number; path: string; headers: [string, string][] }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'exec'; argv: string[]; env: Record<string, string>; netnsPath: string | null }
  /** A probe the playground cannot run (gRPC, or a port name that does not resolve): always fails. */
  | { kind: 'invalid'; message: string };

export interface ProbeOutcome {
  ok: boolean;
  /** Why it failed (or what the exec probe printed), in the kubelet's words. */
  message: string;
}

/** The probers' identity, as the kubelet sends it ("kube-probe/<major>.<minor>"). */
export const PROBE_USER_AGENT = 'kube-probe/1.36';

// The kubelet reads at most this much of a probe's output.
const MAX_OUTPUT = 10 * 1024;

export interface ProbeTarget {
  podIP: string;
  netnsPath: string | null;
  /** The container's environment (exec probes run with it). */
  env: Record<string, string>;
}

/** Turns a probe from the pod spec into what to do, resolving named ports against the container. */
export function probeAction(probe: V1Probe, container: V1Container, target: ProbeTarget): ProbeAction {
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port, container);
    if (port === undefined) return { kind: 'invalid', message: `unknown port ${String(probe.httpGet.port)}` };
    const path = probe.httpGet.path ?? '/';
    return {
      kind: 'http',
      scheme: probe.httpGet.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP',
      host: probe.httpGet.host || target.podIP,
      port,
      path: path.startsWith('/') ? path : `/${path}`,
      headers: (probe.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value]),
    };
  }
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port, container);
    if (port === undefined) return { kind: 'invalid', message: `unknown port ${String(probe.tcpSocket.port)}` };
    return { kind: 'tcp', host: probe.tcpSocket.host || target.podIP, port };
  }
  if (probe.exec?.command?.length) {
    return { kind: 'exec', argv: probe.exec.command, env: target.env, netnsPath: target.netnsPath };
  }
  if (probe.grpc) return { kind: 'invalid', message: 'gRPC probes are not supported by the playground kubelet' };
  return { kind: 'invalid', message: 'probe has no handler' };
}

export function runProbe(action: ProbeAction, timeoutMs: number): Promise<ProbeOutcome> {
  switch (action.kind) {
    case 'http':
      return httpProbe(action, timeoutMs);
    case 'tcp':
      return tcpProbe(action.host, action.port, timeoutMs);
    case 'exec':
      return execProbe(action, timeoutMs);
    case 'invalid':
      return Promise.resolve({ ok: false, message: action.message });
  }
}

function resolvePort(port: number | string | undefined, container: V1Container): number | undefined {
  if (typeof port === 'number') return port;
  if (port === undefined) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function httpProbe(a: Extract<ProbeAction, { kind: 'http' }>, timeoutMs: number): Promise<ProbeOutcome> {
  const url = `${a.scheme.toLowerCase()}://${hostPort(a.host, a.port)}${a.path}`;
  const headers: Record<string, string> = { 'User-Agent': PROBE_USER_AGENT, Accept: '*/*' };
  for (const [k, v] of a.headers) headers[k] = v;
  return new Promise((resolve) => {
    const onResponse = (res: IncomingMessage): void => {
      const status = res.statusCode ?? 0;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < MAX_OUTPUT) body += chunk;
      });
      res.on('end', () => {
        clearTimeout(deadline);
        // Like the kubelet: 2xx and 3xx pass (a redirect is not followed off the pod).
        resolve(
          status >= 200 && status < 400
            ? { ok: true, message: body.slice(0, MAX_OUTPUT) }
            : { ok: false, message: `HTTP probe failed with statuscode: ${status}` },
        );
      });
      res.on('error', () => {});
    };
    // Go's HTTP client, which the kubelet's prober uses, accepts bare-LF responses; so do we.
    const opts = { host: a.host, port: a.port, path: a.path, method: 'GET', headers, agent: false as const, insecureHTTPParser: true };
    const req = a.scheme === 'HTTPS' ? httpsRequest({ ...opts, rejectUnauthorized: false }, onResponse) : httpRequest(opts, onResponse);
    const deadline = setTimeout(() => {
      req.destroy();
      resolve({ ok: false, message: `Get "${url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)` });
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      const parseError = err.code?.startsWith('HPE_') ?? false;
      resolve({
        ok: false,
        message: parseError ? `Get "${url}": malformed HTTP response: ${err.message}` : `Get "${url}": dial tcp ${hostPort(a.host, a.port)}: ${dialError(err)}`,
      });
    });
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const deadline = setTimeout(() => {
      sock.destroy();
      resolve({ ok: false, message: `dial tcp ${hostPort(host, port)}: i/o timeout` });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(deadline);
      sock.destroy();
      resolve({ ok: true, message: '' });
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      resolve({ ok: false, message: `dial tcp ${hostPort(host, port)}: ${dialError(err)}` });
    });
  });
}

async function execProbe(a: Extract<ProbeAction, { kind: 'exec' }>, timeoutMs: number): Promise<ProbeOutcome> {
  try {
    const r = await run(a.argv, {
      env: a.env,
      timeoutMs,
      maxOutputBytes: MAX_OUTPUT,
      ...(a.netnsPath ? { netnsPath: a.netnsPath } : {}),
    });
    const output = (r.stdout + r.stderr).slice(0, MAX_OUTPUT);
    if (r.timedOut) return { ok: false, message: `command ${JSON.stringify(a.argv.join(' '))} timed out` };
    return r.code === 0 ? { ok: true, message: output } : { ok: false, message: output || `command exited with ${r.code ?? r.signal}` };
  } catch (err) {
    return { ok: false, message: `exec failed: ${(err as Error).message}` };
  }
}

function dialError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connect: connection refused';
    case 'EHOSTUNREACH':
      return 'connect: no route to host';
    case 'ENETUNREACH':
      return 'connect: network is unreachable';
    default:
      return err.message;
  }
}
