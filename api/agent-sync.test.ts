// What the controller accepts from an agent (parseAgentMessage): hostile-input limits. The
// decoding of each message kind end to end is in controller/server/agent-server.test.ts, and the
// fuzzing in controller/server/sync-session.fuzz.test.ts.
import t from 'tap';
import { ProtocolError, parseAgentMessage } from './agent-sync.ts';

t.test('names and versions have sizes', async (t) => {
  const hello = (fields: Record<string, unknown>) => JSON.stringify({ type: 'hello', node: 'node-1', agentVersion: '0.1.0', ...fields });
  t.match(parseAgentMessage(hello({})), { type: 'hello', node: 'node-1' });
  t.ok(parseAgentMessage(hello({ node: 'n'.repeat(253) })), 'a node name as long as Kubernetes allows');
  t.throws(() => parseAgentMessage(hello({ node: 'n'.repeat(254) })), { name: 'ProtocolError', message: /hello\.node/ });
  t.throws(() => parseAgentMessage(hello({ agentVersion: 'v'.repeat(10_000) })), { name: 'ProtocolError', message: /agentVersion/ });
  t.throws(() => parseAgentMessage(hello({ epoch: 'e'.repeat(10_000) })), { name: 'ProtocolError', message: /hello\.epoch/ });
});

t.test('an unknown type is quoted back only in part', async (t) => {
  const err = (() => {
    try {
      parseAgentMessage(JSON.stringify({ type: 'x'.repeat(10_000) }));
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof ProtocolError);
  t.ok((err as Error).message.length < 120, 'a short message');
  t.throws(() => parseAgentMessage('{}'), { message: /unknown message type undefined/ }, 'no type at all');
});
