// Found by the flood test's negative control: a request whose connection is reset (TCP RST) while
// its token is still under review left a server stream emitting 'error' with no listener — an
// uncaught exception, i.e. the controller process gone. Any pod could do that at will.
//
// Here a client process sends a request whose review the test holds, stops reading (so that the
// server's PINGs pile up unread), and is killed: with unread data, the kernel closes its socket
// with an RST, as it did for the flood process. Only then is the review released.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentAuthenticator } from './agent-auth.ts';
import type { TokenReviewResult } from './agent-auth.ts';
import { agentReview, startTestServer } from './test-server.ts';

const CLIENT = `
import { connect } from 'node:http2';
const [url, ca] = [process.env.URL, process.env.CA];
const session = connect(url, { ca, servername: 'weft-controller' });
session.on('error', () => {});
session.on('connect', () => {
  const req = session.request({ ':method': 'POST', ':path': '/weft.v1/sign', authorization: 'Bearer held' });
  req.on('error', () => {});
  req.end('{}');
  setTimeout(() => {
    process.stdout.write('sent\\n');
    const until = Date.now() + 300;
    while (Date.now() < until); // read nothing: the server's PINGs stay in the socket buffer
    process.kill(process.pid, 'SIGKILL');
  }, 50);
});
`;

t.test('a connection reset while its token is under review costs only that request', async (t) => {
  let release: (() => void) | undefined;
  const authenticator = new AgentAuthenticator({
    reviewer: {
      review: async (token): Promise<TokenReviewResult> => {
        if (token === 'held') await new Promise<void>((resolve) => (release = resolve));
        return agentReview('node-1');
      },
    },
  });
  const server = await startTestServer({ authenticator, server: { heartbeatIntervalMs: 20, heartbeatTimeoutMs: 5_000 } });
  t.teardown(() => server.close());

  const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENT], { env: { ...process.env, URL: server.url, CA: server.ca }, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  t.equal((await lines.next()).value, 'sent', 'the request is under review');
  await once(child, 'exit');
  await sleep(200); // the server sees the reset while the review is pending
  t.ok(release, 'the review was still held when the client went');
  release?.();
  await sleep(100);

  const a = await server.agent('fine');
  t.equal((await a.sign('{}')).status, 400, 'the server is alive and answers the next agent');
});
