import t from 'tap';
import { parseAgentMessage, parseSyncMessage, ProtocolError } from './agent-sync.ts';
import type { CompiledRoute } from './route.ts';

const route: CompiledRoute = {
  key: 'HTTPRoute/a/r',
  kind: 'HTTPRoute',
  namespace: 'a',
  name: 'r',
  generation: 1,
  created: '2026-01-01T00:00:00Z',
  parents: [{ service: 'a/web', port: 80 }],
  rules: [
    {
      name: '0',
      matches: [{ path: { type: 'RegularExpression', value: '/v[0-9]+' }, headers: [], queryParams: [] }],
      filters: [{ type: 'RequestHeaderModifier', modifier: { set: [], add: [{ name: 'x', value: 'y' }], remove: [] } }],
      backends: [{ service: 'a/web', port: 80, weight: 1, filters: [], retryBudget: { policy: 'a/p', percent: 20, intervalMs: 10_000, minCount: 10, minIntervalMs: 1000 } }],
      timeouts: { requestMs: 100 },
      retry: { codes: [503], attempts: 3, backoffMs: 10 },
    },
  ],
};
const snapshot = (r: unknown) => JSON.stringify({ type: 'snapshot', epoch: 'e', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Route', value: r }] });

t.test('a compiled route travels in a sync message', async (t) => {
  const m = parseSyncMessage(snapshot(route));
  t.same(m.type === 'snapshot' ? m.resources[0] : undefined, { kind: 'Route', value: route });
});

t.test('a malformed route is a protocol error, never half-applied', async (t) => {
  const bad = structuredClone(route) as unknown as { rules: { matches: { path: { value: string } }[] }[] };
  (bad.rules[0] as { matches: { path: { value: string } }[] }).matches[0]!.path.value = '(unclosed';
  t.throws(() => parseSyncMessage(snapshot(bad)), ProtocolError, 'a regular expression that does not compile');
  t.throws(() => parseSyncMessage(snapshot({ ...route, rules: [{ ...route.rules[0], filters: [{ type: 'RequestMirror' }] }] })), ProtocolError, 'an unknown filter');
  t.throws(() => parseSyncMessage(snapshot({ ...route, kind: 'TCPRoute' })), ProtocolError);
  const budget = (retryBudget: object) => ({ ...route, rules: [{ ...route.rules[0], backends: [{ service: 'a/web', port: 80, weight: 1, filters: [], retryBudget }] }] });
  t.throws(() => parseSyncMessage(snapshot(budget({ policy: 'a/p', percent: 101, intervalMs: 1, minCount: 1, minIntervalMs: 1 }))), ProtocolError, 'a budget over 100 %');
  t.throws(() => parseSyncMessage(snapshot(budget({ policy: 'a/p', percent: 20, intervalMs: 1000, minCount: 1, minIntervalMs: 0 }))), ProtocolError, 'a floor over no time');
});

t.test('the hello announces features; a long list is refused', async (t) => {
  t.same(parseAgentMessage(JSON.stringify({ type: 'hello', node: 'n', agentVersion: '1', features: ['routes'] })), { type: 'hello', node: 'n', agentVersion: '1', features: ['routes'] });
  t.throws(() => parseAgentMessage(JSON.stringify({ type: 'hello', node: 'n', agentVersion: '1', features: Array(33).fill('x') })), ProtocolError);
});
