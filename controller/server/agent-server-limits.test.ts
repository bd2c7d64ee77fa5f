// The agent server's per-connection side of the limits (source-limiter.ts, agent-auth.ts), over
// real TLS and HTTP/2: connections over a source's cap are closed before the handshake and stop
// counting once they authenticate; a connection that ignores RATE_LIMITED is closed with
// ENHANCE_YOUR_CALM; and a connection's trust (no per-source limits for a token rotation) ends
// with the first refused token. The reviewer answers from a table: these are the server's rules.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { AgentAuthenticator } from './agent-auth.ts';
import { ReviewGate } from './review-gate.ts';
import { SourceLimiter } from './source-limiter.ts';
import { agentReview, startTestServer } from './test-server.ts';
import type { TestServer } from './test-server.ts';

async function setup(t: Test, limits: ConstructorParameters<typeof SourceLimiter>[0]) {
  const reviewed: string[] = [];
  const limiter = new SourceLimiter(limits, () => 0); // a frozen clock: buckets never refill
  const authenticator = new AgentAuthenticator({
    reviewer: {
      review: async (token) => {
        reviewed.push(token);
        return token.startsWith('agent') ? agentReview('node-1') : { authenticated: false };
      },
    },
    limiter,
    gate: new ReviewGate(),
  });
  const server = await startTestServer({ authenticator, limiter });
  t.teardown(() => server.close());
  return { server, limiter, reviewed };
}

async function refusedBeforeTls(server: TestServer, source: string): Promise<boolean> {
  return server.agent('x', source).then(
    (a) => {
      a.close();
      return false;
    },
    () => true,
  );
}

t.test('per-source connection cap, before TLS; an authenticated connection stops counting', async (t) => {
  const { server, limiter } = await setup(t, { connectionsPerSource: 2 });
  const a = await server.agent('agent-1', '127.0.0.21');
  const b = await server.agent('bogus', '127.0.0.21');
  t.ok(await refusedBeforeTls(server, '127.0.0.21'), 'a third unauthenticated connection is closed');
  t.notOk(await refusedBeforeTls(server, '127.0.0.22'), 'another source is not affected');
  t.equal((await a.sign('{}')).status, 400, 'the first connection authenticates (then its body is refused)');
  const c = await server.agent('agent-1', '127.0.0.21');
  t.equal(limiter.counts.unauthenticatedConnections, 2, 'b and c count; a does not any more');
  b.close();
  c.close();
  t.match(await server.metrics.registry.metrics(), /weft_controller_agent_api_limited_total\{reason="source_connections"\} [1-9]/);
});

t.test('a connection that ignores RATE_LIMITED is closed with ENHANCE_YOUR_CALM', async (t) => {
  const { server, reviewed } = await setup(t, { reviewBurst: 1 });
  const a = await server.agent(undefined, '127.0.0.31');
  const goaway = once(a.session, 'goaway');
  const statuses: number[] = [];
  for (let i = 0; i < 20 && !a.session.closed && !a.session.destroyed; i++) {
    a.token = `bogus-${i}`;
    statuses.push((await a.sign('{}').catch(() => ({ status: 0 }))).status);
  }
  t.equal(statuses[0], 401, 'the first unknown token is reviewed');
  t.comment(`statuses: ${statuses.join(' ')}`);
  t.strictSame(statuses.slice(1, 16), Array(15).fill(429), 'then 429s, without reviews');
  t.ok(statuses.length <= 17, `and the connection went after the 16th (${statuses.length} requests)`);
  const [code] = (await goaway) as [number];
  t.equal(code, 11, 'then GOAWAY ENHANCE_YOUR_CALM');
  t.equal(reviewed.length, 1);
});

t.test('trust covers a token rotation, and ends with a refused token', async (t) => {
  const { server, reviewed } = await setup(t, { reviewBurst: 1 });
  const a = await server.agent('agent-1', '127.0.0.41');
  t.equal((await a.sign('{}')).status, 400, 'authenticated (the bucket of 1 is spent)');
  a.token = 'agent-2';
  t.equal((await a.sign('{}')).status, 400, 'a rotated token is reviewed despite the empty bucket');
  a.token = 'bogus-1';
  t.equal((await a.sign('{}')).status, 401, 'an unknown token on a trusted connection is reviewed once');
  a.token = 'bogus-2';
  t.equal((await a.sign('{}')).status, 429, 'and the next meets the limits again');
  t.strictSame(reviewed, ['agent-1', 'agent-2', 'bogus-1']);
});
