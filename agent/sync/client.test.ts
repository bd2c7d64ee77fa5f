// The sync client against a real agent server (real TLS 1.3, HTTP/2, authenticator): a controller
// that sheds load with 429 and retry-after is left alone for that long, not hit again after the
// usual 0.5 s backoff.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentApiError } from '../../controller/server/errors.ts';
import { agentReview, fakeJwt, startTestServer } from '../../controller/server/test-server.ts';
import { StateStore } from '../state/store.ts';
import { SyncClient } from './client.ts';

t.test('a 429 with retry-after delays the reconnect by at least that long', async (t) => {
  const attempts: number[] = [];
  const server = await startTestServer({
    authenticator: {
      authenticate: async () => {
        attempts.push(performance.now());
        if (attempts.length === 1) throw new AgentApiError('RATE_LIMITED', 'busy', { retryAfterSeconds: 2 });
        return Promise.resolve({ node: 'node-1', username: agentReview('node-1').user?.username ?? '' });
      },
    },
  });
  const dir = await mkdtemp(join(tmpdir(), 'weft-sync-'));
  t.teardown(async () => {
    client.stop();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(join(dir, 'ca.crt'), server.ca);
  await writeFile(join(dir, 'token'), fakeJwt('agent'));
  const store = new StateStore();
  const client = new SyncClient({
    url: server.url,
    node: 'node-1',
    caFile: join(dir, 'ca.crt'),
    tokenFile: join(dir, 'token'),
    agentVersion: 'test',
    store,
    log: () => {},
  });
  client.start();
  const until = Date.now() + 10_000;
  while (!(client.connected && store.revision > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.ok(client.connected, 'connected after the refusal');
  t.ok(store.revision > 0, 'and synced');
  t.equal(attempts.length, 2, 'one refusal, one success');
  const waited = (attempts[1] ?? 0) - (attempts[0] ?? 0);
  t.ok(waited >= 2000, `the second attempt came ${waited.toFixed(0)} ms after the first: not before the retry-after of 2 s`);
  t.ok(waited < 4000, 'and not much later');
});
