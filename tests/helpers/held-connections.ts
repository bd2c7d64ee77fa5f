// Holds long-lived TCP connections to an echo server and keeps them busy, for the upgrade suite.
// Runs inside a pod's network namespace, as that pod's traffic:
//   ip netns exec <pod-netns> node tests/helpers/held-connections.ts <ip:port> <count>
//
// Each held connection sends a numbered line every INTERVAL_MS and waits for its echo before the
// next (ping-pong). It counts as dropped if it errors, closes, echoes something else, or its echo
// is more than STALL_MS late. Every PROBE_EVERY_MS a new short connection checks that new
// connections work too.
//
// stdin, one command per line: `report`, `verify` (every held connection echoes one more line),
// `close` (ends them all cleanly, then exits). stdout: one JSON object per line; the first is
// `{"type":"ready"}` once every connection has echoed once.
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const INTERVAL_MS = 100;
const STALL_MS = 5000;
const PROBE_EVERY_MS = 200;
const PROBE_TIMEOUT_MS = 3000;

const [target = '', countArg = '1'] = process.argv.slice(2);
const [host = '', portText = ''] = target.split(':');
const port = Number(portText);
const count = Number(countArg);
if (!host || !Number.isInteger(port) || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: held-connections.ts <ip:port> <count>\n');
  process.exit(2);
}

const started = performance.now();
const now = () => Math.round(performance.now() - started);
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

interface Held {
  id: number;
  socket: Socket;
  seq: number;
  /** When the line now awaiting its echo was sent; undefined when none is outstanding. */
  sentAt: number | undefined;
  lastEchoAt: number;
  maxGapMs: number;
  echoes: number;
  buffer: string;
  dropped?: { reason: string; atMs: number };
  closing: boolean;
  onLine?: (line: string) => void;
}

const held: Held[] = [];

function drop(h: Held, reason: string): void {
  if (h.dropped || h.closing) return;
  h.dropped = { reason, atMs: now() };
  h.socket.destroy();
}

function open(id: number): Promise<Held> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const h: Held = { id, socket, seq: 0, sentAt: undefined, lastEchoAt: now(), maxGapMs: 0, echoes: 0, buffer: '', closing: false };
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      send(h);
      h.onLine = () => {
        h.onLine = undefined;
        resolve(h);
      };
    });
    socket.on('data', (chunk: string) => {
      h.buffer += chunk;
      for (let i = h.buffer.indexOf('\n'); i >= 0; i = h.buffer.indexOf('\n')) {
        const line = h.buffer.slice(0, i);
        h.buffer = h.buffer.slice(i + 1);
        received(h, line);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (h.echoes === 0) reject(e);
      drop(h, e.code ?? e.message);
    });
    socket.on('close', () => drop(h, 'closed'));
  });
}

function send(h: Held): void {
  h.seq += 1;
  h.sentAt = now();
  h.socket.write(`${h.id}:${h.seq}\n`);
}

function received(h: Held, line: string): void {
  if (h.onLine && line.startsWith(`${h.id}:verify`)) return h.onLine(line);
  if (line !== `${h.id}:${h.seq}`) return drop(h, `echoed "${line}", expected "${h.id}:${h.seq}"`);
  const t = now();
  h.maxGapMs = Math.max(h.maxGapMs, t - h.lastEchoAt);
  h.lastEchoAt = t;
  h.echoes += 1;
  h.sentAt = undefined;
  h.onLine?.(line);
}

// Ping-pong: the next line goes out once the previous one came back and the interval passed.
let ticking = true;
const ticker = setInterval(() => {
  if (!ticking) return;
  const t = now();
  for (const h of held) {
    if (h.dropped || h.closing) continue;
    if (h.sentAt !== undefined) {
      if (t - h.sentAt > STALL_MS) drop(h, `no echo for ${t - h.sentAt} ms`);
      continue;
    }
    if (t - h.lastEchoAt >= INTERVAL_MS) send(h);
  }
}, INTERVAL_MS / 4);

const probes = { ok: 0, failed: 0, failures: [] as { reason: string; atMs: number; at: string }[] };
let probing = false;
function probe(n: number): void {
  const socket = connect({ host, port, noDelay: true });
  const line = `probe-${n}`;
  let answer = '';
  let done = false;
  const finish = (error?: string) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (error) {
      probes.failed += 1;
      // Wall-clock time too: what the agents logged then is read by it.
      probes.failures.push({ reason: error, atMs: now(), at: new Date().toISOString() });
      socket.destroy();
    } else {
      probes.ok += 1;
      socket.end();
    }
  };
  const timer = setTimeout(() => finish(`no echo within ${PROBE_TIMEOUT_MS} ms`), PROBE_TIMEOUT_MS);
  socket.setEncoding('utf8');
  socket.once('connect', () => socket.write(`${line}\n`));
  socket.on('data', (d: string) => {
    answer += d;
    if (answer.includes('\n')) finish(answer.trim() === line ? undefined : `echoed "${answer.trim()}"`);
  });
  socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  socket.on('close', () => finish('closed before the echo'));
}
let probeCount = 0;
const prober = setInterval(() => probing && probe(++probeCount), PROBE_EVERY_MS);

function report(): object {
  const t = now();
  const live = held.filter((h) => !h.dropped);
  return {
    type: 'report',
    atMs: t,
    held: held.length,
    open: live.length,
    dropped: held.filter((h) => h.dropped).map((h) => ({ id: h.id, ...h.dropped })),
    echoes: held.reduce((a, h) => a + h.echoes, 0),
    // The longest wait between two echoes on any held connection (or since the last one).
    maxGapMs: Math.max(0, ...live.map((h) => Math.max(h.maxGapMs, t - h.lastEchoAt))),
    probes: { ...probes, failures: probes.failures.slice(0, 20) },
  };
}

async function verify(): Promise<object> {
  ticking = false;
  // Let the echoes in flight come back first.
  const deadline = now() + STALL_MS;
  while (held.some((h) => !h.dropped && h.sentAt !== undefined) && now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const results = await Promise.all(
    held
      .filter((h) => !h.dropped)
      .map(
        (h) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), STALL_MS);
            h.onLine = (line) => {
              h.onLine = undefined;
              clearTimeout(timer);
              resolve(line === `${h.id}:verify`);
            };
            h.socket.write(`${h.id}:verify\n`);
          }),
      ),
  );
  ticking = true;
  return { type: 'verified', ok: results.filter(Boolean).length, failed: results.filter((r) => !r).length, dropped: held.filter((h) => h.dropped).length };
}

async function close(): Promise<void> {
  ticking = false;
  probing = false;
  clearInterval(ticker);
  clearInterval(prober);
  await Promise.all(
    held
      .filter((h) => !h.dropped)
      .map((h) => {
        h.closing = true;
        return new Promise<void>((resolve) => {
          h.socket.once('close', () => resolve());
          h.socket.end();
        });
      }),
  );
  emit({ type: 'closed' });
  process.exit(0);
}

for (let id = 1; id <= count; id++) held.push(await open(id));
probing = true;
emit({ type: 'ready', held: held.length });

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === 'report') emit(report());
  else if (cmd === 'verify') emit(await verify());
  else if (cmd === 'close') await close();
}
