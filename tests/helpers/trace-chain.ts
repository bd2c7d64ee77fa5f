// The apps of the tracing suite, one file, three roles (argv[2]):
//   server             :8080, answers every request with the trace headers it received (JSON)
//   forward <url>      :8080, calls <url> with the traceparent/tracestate/baggage it received, as
//                      an instrumented app continues its caller's trace, and answers with what it
//                      received and what the next hop answered
//   load <url> <s> <c> keeps <c> keep-alive requests in flight for <s> seconds; prints
//                      {"ok":n,"failed":n,"firstError":...} on stdout
import http from 'node:http';

const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled'];

function traceHeaders(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of TRACE_HEADERS) {
    const v = req.headers[h];
    if (typeof v === 'string') out[h] = v;
  }
  return out;
}

function get(url: string, headers: Record<string, string>, agent: http.Agent): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const [role, ...args] = process.argv.slice(2);
if (role === 'server') {
  http
    .createServer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ received: traceHeaders(req) }));
    })
    .listen(8080);
} else if (role === 'forward') {
  const next = args[0] ?? '';
  // A connection per call: one kept alive would outlive the agent that carried it when the test
  // rolls the agents, and its requests would go on through the old one.
  const agent = new http.Agent({ keepAlive: false });
  http
    .createServer((req, res) => {
      req.resume();
      const received = traceHeaders(req);
      // What an instrumented app sends on: the context it was called with (no span of its own here).
      const out: Record<string, string> = {};
      for (const h of ['traceparent', 'tracestate', 'baggage']) if (received[h] !== undefined) out[h] = received[h];
      get(`${next}${req.url ?? '/'}`, out, agent).then(
        (r) => {
          let next: unknown = r.body.toString();
          try {
            if (r.status === 200) next = JSON.parse(r.body.toString()) as unknown;
          } catch {
            // A 200 whose body is not the next hop's JSON was altered on the way: answered as a
            // failure with the bytes that came (a real-node run saw binary here, which crashed
            // this app and failed every request until the kubelet restarted it).
            res.statusCode = 502;
            res.end(`corrupt answer from the next hop (200, ${r.body.length} bytes): ${r.body.subarray(0, 96).toString('hex')}`);
            return;
          }
          res.statusCode = r.status;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ received, next }));
        },
        (err: Error) => {
          res.statusCode = 502;
          res.end(err.message);
        },
      );
    })
    .listen(8080);
} else if (role === 'load') {
  const url = args[0] ?? '';
  const seconds = Number(args[1] ?? '10');
  const concurrency = Number(args[2] ?? '4');
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const until = Date.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let firstError = '';
  const worker = async (): Promise<void> => {
    while (Date.now() < until) {
      try {
        const r = await get(url, {}, agent);
        if (r.status === 200) ok += 1;
        else {
          failed += 1;
          firstError ||= `status ${r.status}: ${r.body.toString().slice(0, 200)}`;
        }
      } catch (err) {
        failed += 1;
        firstError ||= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ ok, failed, firstError })}\n`);
} else {
  process.stderr.write('usage: trace-chain.ts server | forward <url> | load <url> <seconds> <concurrency>\n');
  process.exit(2);
}
