// Finding 5 of the hostile-input review: a denied gRPC call whose body is still arriving. The
// answer must reach the client whole, whatever client: curl 7.88 lost it about one call in four
// when the agent answered at once and reset the upload with RST_STREAM(NO_ERROR).
import { execFile } from 'node:child_process';
import { writeFile, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { closed, connect2, grpcFrame, startFront, startHttp2Upstream } from './test-fixtures.ts';

const run = promisify(execFile);
const grpc = { ':method': 'POST', ':path': '/admin/pkg.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' };

type Answer = { status: number | undefined; grpcStatus: string | undefined; rstCode: number | undefined; error: string };

/** A gRPC call whose body goes out in `chunks` writes, `gapMs` apart, after the headers. */
async function call(session: http2.ClientHttp2Session, chunks: Buffer[], gapMs: number): Promise<Answer> {
  const stream = session.request({ ':authority': 'shop.example', ...grpc }, { endStream: false });
  const answer: Answer = { status: undefined, grpcStatus: undefined, rstCode: undefined, error: '' };
  stream.on('response', (h) => {
    answer.status = h[':status'];
    answer.grpcStatus = h['grpc-status'] as string | undefined;
  });
  stream.on('error', (e: NodeJS.ErrnoException) => (answer.error = e.code ?? e.message));
  stream.resume();
  const done = closed(stream);
  for (const [i, chunk] of chunks.entries()) {
    await sleep(gapMs);
    if (stream.closed) break;
    if (i === chunks.length - 1) stream.end(chunk);
    else stream.write(chunk);
  }
  await done;
  answer.rstCode = stream.rstCode;
  return answer;
}

t.test('a unary call whose message follows its headers: the denial arrives, the stream ends cleanly', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const session = connect2(t, front.port);
  for (let i = 0; i < 20; i++) {
    const a = await call(session, [grpcFrame(Buffer.from('hello'))], 5);
    t.same(a, { status: 200, grpcStatus: '7', rstCode: http2.constants.NGHTTP2_NO_ERROR, error: '' }, `call ${i}`);
  }
  t.equal(upstream.seen.length, 0);
});

t.test('an upload that keeps coming gets the denial, then RST_STREAM(NO_ERROR)', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const session = connect2(t, front.port);
  const chunks = Array.from({ length: 40 }, () => Buffer.alloc(4096));
  const started = performance.now();
  const a = await call(session, chunks, 50);
  t.same(a, { status: 200, grpcStatus: '7', rstCode: http2.constants.NGHTTP2_NO_ERROR, error: '' });
  t.ok(performance.now() - started < 1900, 'answered after the drain time, not after the whole upload');
});

const curl = await run('curl', ['--version']).catch(() => undefined);
const skipCurl = curl?.stdout.includes('nghttp2') ? false : 'no curl with HTTP/2 on this machine';

t.test('curl, a real client that lost early answers: every denial arrives', { skip: skipCurl }, async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const body = join(tmpdir(), `weft-grpc-${process.pid}.bin`);
  await writeFile(body, grpcFrame(Buffer.from('hello')));
  t.teardown(() => rm(body, { force: true }));
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 60; i++) {
    const args = ['-sS', '-m', '5', '--http2-prior-knowledge', '-D', '-', '-o', '/dev/null', '-H', 'content-type: application/grpc', '-H', 'te: trailers', '--data-binary', `@${body}`, `http://127.0.0.1:${front.port}/admin/pkg.Echo/Say`];
    const outcome = await run('curl', args).then(
      (r) => (/grpc-status: 7/.test(r.stdout) ? 'denied' : `no grpc-status: ${r.stdout.slice(0, 60)}`),
      (e: { code?: number; stderr?: string }) => `curl exit ${e.code}: ${e.stderr?.trim()}`,
    );
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  t.same(Object.fromEntries(outcomes), { denied: 60 });
});
