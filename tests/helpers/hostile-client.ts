// A hostile HTTP client for tests/hostile.test.ts, run inside a playground pod: each case sends
// bytes no well-behaved client would (broken framing, resets at every stage, smuggling shapes)
// to an inspected port, and reports what came back as one JSON line:
//   {"case":"…","outcome":"status 400" | "closed" | "reset" | "timeout"}
// Usage: node tests/helpers/hostile-client.ts <ip> <http port> <h2c port> <case>...
import net from 'node:net';
import http2 from 'node:http2';

const [ip = '', httpPort = '', h2Port = '', ...cases] = process.argv.slice(2);
const HTTP = Number(httpPort);
const H2 = Number(h2Port);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Outcome = string;

/**
 * Writes `steps` (bytes, pauses, or 'reset' / 'end') to a fresh connection and reports the
 * first status line it reads back, or how the connection ended.
 */
type Action = { action: 'reset' | 'end' | 'read-then-reset' };
const RESET: Action = { action: 'reset' };
const END: Action = { action: 'end' };
const READ_THEN_RESET: Action = { action: 'read-then-reset' };

function raw(steps: (string | Buffer | number | Action)[], timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect(HTTP, ip);
    let got = '';
    let settled = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    let resetOnFirstByte = false;
    s.on('data', (d: Buffer) => {
      if (resetOnFirstByte) {
        s.resetAndDestroy();
        return done('reset-by-client-mid-response');
      }
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) done(`status ${m[1]}`);
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNRESET' ? 'reset' : `error ${e.code ?? e.message}`));
    s.on('close', () => done('closed'));
    s.on('connect', async () => {
      for (const step of steps) {
        if (settled) return;
        if (typeof step === 'number') await sleep(step);
        else if (typeof step === 'string' || Buffer.isBuffer(step)) s.write(step);
        else if (step.action === 'reset') {
          s.resetAndDestroy();
          return done('reset-by-client');
        } else if (step.action === 'end') s.end();
        else resetOnFirstByte = true;
      }
    });
  });
}

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

const RAW_CASES: Record<string, () => Promise<Outcome>> = {
  // The crash of issue 11: an allowed POST whose chunked framing is broken.
  'broken-chunked': () => raw([head(['POST /upload HTTP/1.1', 'Host: server', 'Transfer-Encoding: chunked']), 'zz\r\nhello\r\n0\r\n\r\n']),
  'truncated-chunked': () => raw([head(['POST /upload HTTP/1.1', 'Host: server', 'Transfer-Encoding: chunked']), '64\r\n0123456789', END]),
  'truncated-headers': () => raw(['GET / HTTP/1.1\r\nHost: ser', END]),
  'reset-during-headers': () => raw(['GET / HTTP/1.1\r\nHost: ser', 50, RESET]),
  'reset-after-headers': () => raw([head(['POST /upload HTTP/1.1', 'Host: server', 'Content-Length: 100000']), RESET]),
  'reset-mid-body': () => raw([head(['POST /upload HTTP/1.1', 'Host: server', 'Content-Length: 100000']), Buffer.alloc(30000, 97), 200, RESET]),
  'fin-mid-body': () => raw([head(['POST /upload HTTP/1.1', 'Host: server', 'Content-Length: 100000']), Buffer.alloc(30000, 97), END]),
  'reset-mid-response': () => raw([READ_THEN_RESET, head(['GET /bytes/8388608 HTTP/1.1', 'Host: server'])]),
  garbage: () => raw([Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)), 200, END]),
  'huge-header': () => raw([head(['GET / HTTP/1.1', 'Host: server', `X-Big: ${'a'.repeat(200_000)}`])]),
  'cl-and-te': () => raw([head(['POST / HTTP/1.1', 'Host: server', 'Content-Length: 5', 'Transfer-Encoding: chunked']), '0\r\n\r\n']),
  // Policy bypasses of issue 11: what policy evaluates must be what the backend receives.
  'duplicate-authorization': () => raw([head(['GET /private HTTP/1.1', 'Host: server', 'Authorization: Bearer evil', 'Authorization: Bearer fine'])]),
  'single-authorization-evil': () => raw([head(['GET /private HTTP/1.1', 'Host: server', 'Authorization: Bearer evil'])]),
  'absolute-form-other-host': () => raw([head(['GET http://evil.example/ HTTP/1.1', 'Host: server'])]),
  'absolute-form-evil-host-header': () => raw([head(['GET http://server/ HTTP/1.1', 'Host: evil.example'])]),
  // A head that trickles in, one header every 2 s, for up to 30 s: the agent must give up first.
  'slow-headers': () => raw(['GET / HTTP/1.1\r\nHost: server\r\n', ...Array.from({ length: 15 }, (_, i) => [2000, `X-Slow-${i}: x\r\n`]).flat()], 35_000),
  'host-evil': () => raw([head(['GET / HTTP/1.1', 'Host: evil.example'])]),
  'path-param-admin': () => raw([head(['GET /admin;x HTTP/1.1', 'Host: server'])]),
  good: () => raw([head(['GET /ok HTTP/1.1', 'Host: server'])]),
};

/** h2c with `:authority` and a `host` header that disagree. */
function h2AuthorityMismatch(): Promise<Outcome> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://${ip}:${H2}`);
    const timer = setTimeout(() => finish('timeout'), 5000);
    const finish = (o: Outcome) => {
      clearTimeout(timer);
      session.destroy();
      resolve(o);
    };
    session.on('error', (e: NodeJS.ErrnoException) => finish(`session-error ${e.code ?? e.message}`));
    const req = session.request({ ':method': 'GET', ':path': '/', ':authority': 'server', host: 'evil.example' });
    req.on('response', (h) => finish(`status ${String(h[':status'])}`));
    req.on('error', (e: NodeJS.ErrnoException) => finish(`stream-error ${e.code ?? e.message}`));
    req.on('close', () => finish(`rst ${req.rstCode}`));
    req.end();
  });
}

for (const c of cases) {
  const run = c === 'h2-authority-mismatch' ? h2AuthorityMismatch : RAW_CASES[c];
  if (!run) {
    process.stdout.write(`${JSON.stringify({ case: c, outcome: 'unknown case' })}\n`);
    continue;
  }
  process.stdout.write(`${JSON.stringify({ case: c, outcome: await run() })}\n`);
}
