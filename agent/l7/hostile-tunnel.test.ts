// Hostile HTTP/1.1 inside a real HBONE tunnel (mTLS, the agent's HboneServer and HbonePool): broken
// bodies and resets at every stage of an exchange must end that exchange (a 400 or a closed
// stream) and nothing else — not the agent process, not the other connections.
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startHboneFront } from './hbone-fixture.ts';
import { agentOverStream, closed, request1, request2, startHttp1Upstream, startHttp2Upstream } from './test-fixtures.ts';

/** Writes raw bytes into a tunnel stream and collects what comes back until the stream closes. */
async function rawOverTunnel(stream: http2.ClientHttp2Stream, ...chunks: (string | number)[]): Promise<string> {
  const received: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => received.push(chunk));
  stream.on('error', () => {});
  const done = closed(stream);
  for (const chunk of chunks) {
    if (typeof chunk === 'number') await sleep(chunk);
    else if (!stream.destroyed) stream.write(chunk);
  }
  await done;
  return Buffer.concat(received).toString('latin1');
}

/** Resolves once the stream has closed, also if it closed before this was called. */
const settled = (stream: http2.Http2Stream): Promise<void> => (stream.destroyed ? Promise.resolve() : closed(stream));

const POST_HEAD = 'POST /upload HTTP/1.1\r\nhost: shop.example\r\ntransfer-encoding: chunked\r\n\r\n';

t.test('an allowed POST with a broken chunked body, in one write: the stream ends, the agent lives', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startHboneFront(t, upstream.port);
  const answer = await rawOverTunnel(await front.open(), `${POST_HEAD}zz\r\nnot a chunk\r\n\r\n`);
  t.ok(answer === '' || answer.startsWith('HTTP/1.1 '), `a close or an HTTP answer: ${JSON.stringify(answer.slice(0, 40))}`);
  const outcome = await front.outcomes[0];
  t.match(outcome?.error, /malformed request|client/);
  await sleep(20); // the crash came on a later tick, once the abandoned dial had failed
  // Another connection through the same agent still works.
  const agent = agentOverStream(t, await front.open());
  t.equal((await request1(agent, 0, { path: '/after' })).status, 200);
});

t.test('the broken chunk after the upstream was dialled, and resets at every stage', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startHboneFront(t, upstream.port);
  const cases: { name: string; chunks: (string | number)[]; reset: boolean }[] = [
    { name: 'broken chunk mid-body', chunks: [POST_HEAD, 20, '5\r\nhello\r\n', 20, 'zz\r\n\r\n'], reset: false },
    { name: 'reset during the head', chunks: ['POST /upload HTTP/1.1\r\nhost: sh'], reset: true },
    { name: 'reset right after the head (during the dial)', chunks: [POST_HEAD], reset: true },
    { name: 'reset mid-body', chunks: [POST_HEAD, 20, '5\r\nhello\r\n'], reset: true },
    { name: 'reset mid-response', chunks: ['GET /big/10000000 HTTP/1.1\r\nhost: shop.example\r\n\r\n', 5], reset: true },
  ];
  for (const { name, chunks, reset } of cases) {
    const stream = await front.open();
    const answer = rawOverTunnel(stream, ...chunks);
    if (reset) {
      await sleep(50);
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    const got = await answer;
    t.ok(got === '' || got.startsWith('HTTP/1.1 '), `${name}: a close or an HTTP answer`);
  }
  await Promise.all(front.outcomes);
  const agent = agentOverStream(t, await front.open());
  t.equal((await request1(agent, 0, { path: '/after' })).status, 200, 'the agent still serves');
});

t.test('h2 inside the tunnel: streams reset during the dial, mid-body and mid-response, then the tunnel itself', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startHboneFront(t, upstream.port);
  const tunnelStream = await front.open();
  tunnelStream.on('error', () => {});
  const inner = http2.connect('http://inner.invalid', { createConnection: () => tunnelStream });
  inner.on('error', () => {});
  t.teardown(() => inner.destroy());
  const open = (headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream => {
    const s = inner.request({ ':authority': 'shop.example', ...headers }, { endStream });
    s.on('error', () => {});
    return s;
  };
  const duringDial = open({ ':method': 'POST', ':path': '/stream' }, false);
  duringDial.close(http2.constants.NGHTTP2_CANCEL);
  const midBody = open({ ':method': 'POST', ':path': '/stream' }, false);
  midBody.write(Buffer.alloc(1000));
  await sleep(30);
  midBody.close(http2.constants.NGHTTP2_CANCEL);
  const midResponse = open({ ':path': '/hold' }, true);
  await new Promise((resolve) => midResponse.once('data', resolve));
  midResponse.close(http2.constants.NGHTTP2_CANCEL);
  await Promise.all([duringDial, midBody, midResponse].map(settled));
  // And one more whose tunnel stream is reset under it.
  const cutOff = open({ ':method': 'POST', ':path': '/stream' }, false);
  cutOff.write('x');
  await sleep(30);
  tunnelStream.close(http2.constants.NGHTTP2_CANCEL);
  await settled(cutOff);
  await Promise.all(front.outcomes);

  const next = await front.open();
  const again = http2.connect('http://inner.invalid', { createConnection: () => next });
  again.on('error', () => {});
  t.teardown(() => again.destroy());
  t.equal((await request2(again, { ':path': '/after' })).headers[':status'], 200, 'the agent still serves');
});
