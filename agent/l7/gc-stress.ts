// Child of writev-gc.test.ts, run by it with V8 flags that collect garbage every few hundred
// allocations: many small HTTP/1.1 requests served by serveHttp() inside HBONE-like tunnel
// streams (a real local HTTP/2 server, a real upstream), every JSON body checked. Prints one JSON
// line: how many bodies came back corrupt, and the first one's bytes.
import t from 'tap';
import { agentOverStream, request1, startHttp1Upstream, startTunnel } from './test-fixtures.ts';

const REQUESTS = Number(process.env.GC_STRESS_REQUESTS ?? 1000);
const STREAMS = Number(process.env.GC_STRESS_STREAMS ?? 16);

void t.test('small responses through tunnel streams under constant garbage collection', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const tunnel = await startTunnel(t, upstream.port);
  let corrupt = 0;
  let first = '';
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, s) => {
      const stream = await tunnel.open();
      const agent = agentOverStream(t, stream);
      for (let i = 0; i < REQUESTS; i++) {
        const path = `/items/${s}/${i}`;
        const r = await request1(agent, 0, { path });
        let url = '';
        try {
          url = (JSON.parse(r.body.toString()) as { url: string }).url;
        } catch {
          // counted below
        }
        if (url !== path) {
          corrupt++;
          first ||= r.body.subarray(0, 40).toString('hex');
        }
      }
      stream.end();
    }),
  );
  console.log(JSON.stringify({ requests: REQUESTS * STREAMS, corrupt, first }));
});
