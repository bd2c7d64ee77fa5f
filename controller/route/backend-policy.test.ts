// XBackendTrafficPolicy → per-Service retry budgets and per-target status (backend-policy.ts), and
// the budget reaching the compiled route's backends (compile.ts).
import t from 'tap';
import type { Service } from '../../api/agent-sync.ts';
import { ancestorStatuses, compileBackendPolicies, compileRetryConstraint, type BackendPolicyObject } from './backend-policy.ts';
import { compileRoute } from './compile.ts';

const svc = (ns: string, name: string): Service => ({ key: `${ns}/${name}`, namespace: ns, name, clusterIPs: ['10.96.0.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }], endpoints: [] });
const services = new Map([svc('a', 'web'), svc('a', 'api'), svc('b', 'web')].map((s) => [s.key, s]));
const service = (k: string) => services.get(k);

function policy(name: string, created: string, spec: BackendPolicyObject['spec'], ns = 'a'): BackendPolicyObject {
  return { metadata: { name, namespace: ns, generation: 2, creationTimestamp: created }, spec };
}
const web = [{ group: '', kind: 'Service', name: 'web' }];

t.test("the CRD's defaults apply to what a policy leaves out", async (t) => {
  t.same(compileRetryConstraint(policy('p', '', { targetRefs: web, retryConstraint: {} })), { budget: { policy: 'a/p', percent: 20, intervalMs: 10_000, minCount: 10, minIntervalMs: 1000 }, problems: [] });
  const full = compileRetryConstraint(policy('p', '', { targetRefs: web, retryConstraint: { budget: { percent: 0, interval: '1m' }, minRetryRate: { count: 3, interval: '500ms' } } }));
  t.same(full.budget, { policy: 'a/p', percent: 0, intervalMs: 60_000, minCount: 3, minIntervalMs: 500 });
  t.same(compileRetryConstraint(policy('p', '', { targetRefs: web })), { problems: [] }, 'no retryConstraint: no budget, nothing wrong');
});

t.test('values the API server should have refused, and sessionPersistence, make the policy Invalid', async (t) => {
  const problems = (spec: BackendPolicyObject['spec']) => compileRetryConstraint(policy('p', '', spec)).problems;
  t.match(problems({ targetRefs: web, retryConstraint: { budget: { percent: 101 } } }), [/percent: must be an integer from 0 to 100/]);
  t.match(problems({ targetRefs: web, retryConstraint: { budget: { interval: '500ms' } } }), [/budget.interval: must be from 1s to 1h/]);
  t.match(problems({ targetRefs: web, retryConstraint: { budget: { interval: '2h' } } }), [/budget.interval: must be from 1s to 1h/]);
  t.match(problems({ targetRefs: web, retryConstraint: { minRetryRate: { interval: 'soon' } } }), [/minRetryRate.interval: "soon" is not a duration/]);
  t.match(problems({ targetRefs: web, retryConstraint: { minRetryRate: { count: 0 } } }), [/minRetryRate.count/]);
  t.match(problems({ targetRefs: web, retryConstraint: {}, sessionPersistence: { sessionName: 'x' } }), [/sessionPersistence is not implemented by Weft/]);
});

t.test('targets: the oldest policy on a Service wins, the others are Conflicted; a missing Service is TargetNotFound; other kinds are not ours', async (t) => {
  const older = policy('older', '2026-01-01T00:00:00Z', { targetRefs: [...web, { group: '', kind: 'Service', name: 'gone' }, { group: 'multicluster.x-k8s.io', kind: 'ServiceImport', name: 'web' }], retryConstraint: { budget: { percent: 5 } } });
  const newer = policy('newer', '2026-02-01T00:00:00Z', { targetRefs: [...web, { group: '', kind: 'Service', name: 'api' }], retryConstraint: { budget: { percent: 50 } } });
  const other = policy('newer', '2026-03-01T00:00:00Z', { targetRefs: web, retryConstraint: {} }, 'b');
  const bad = policy('bad', '2025-01-01T00:00:00Z', { targetRefs: web, retryConstraint: { budget: { percent: 300 } } });
  const r = compileBackendPolicies([newer, other, bad, older], service);
  t.same(
    [...r.budgets].map(([k, b]) => [k, b.policy, b.percent]),
    [
      ['a/web', 'a/older', 5],
      ['a/api', 'a/newer', 50],
      ['b/web', 'b/newer', 20],
    ],
    'each Service has the budget of the oldest valid policy on it; a policy targets its own namespace only',
  );
  const verdict = (p: string) => r.verdicts.get(p)?.map((v) => `${v.ancestorRef.kind}/${v.ancestorRef.namespace}/${v.ancestorRef.name} ${v.accepted.reason}`);
  t.same(verdict('a/older'), ['Service/a/web Accepted', 'Service/a/gone TargetNotFound'], 'the ServiceImport target gets no status from Weft');
  t.same(verdict('a/newer'), ['Service/a/web Conflicted', 'Service/a/api Accepted']);
  t.match(r.verdicts.get('a/newer')?.[0]?.accepted.message, /XBackendTrafficPolicy a\/older is older/);
  t.same(verdict('a/bad'), ['Service/a/web Invalid'], 'an invalid policy wins nothing, however old');
  t.same(verdict('b/newer'), ['Service/b/web Accepted']);
});

t.test("status: Weft's entry per target, its transition time kept while the condition holds", async (t) => {
  const v = compileBackendPolicies([policy('p', '', { targetRefs: web, retryConstraint: {} })], service).verdicts.get('a/p') ?? [];
  const first = ancestorStatuses(v, 2, 'weft.dev/mesh-controller', [], new Date('2026-12-01T00:00:00.123Z'));
  t.same(first, [
    {
      ancestorRef: { group: '', kind: 'Service', namespace: 'a', name: 'web' },
      controllerName: 'weft.dev/mesh-controller',
      conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'retry budget in force for Service a/web', observedGeneration: 2, lastTransitionTime: '2026-12-01T00:00:00Z' }],
    },
  ]);
  const again = ancestorStatuses(v, 3, 'weft.dev/mesh-controller', first, new Date('2026-12-02T00:00:00Z'));
  t.equal(again[0]?.conditions[0]?.lastTransitionTime, '2026-12-01T00:00:00Z', 'unchanged status: same transition time');
  t.equal(again[0]?.conditions[0]?.observedGeneration, 3);
});

t.test('the budget reaches every backend of a route that sends to the Service, not one that did not resolve', async (t) => {
  const budgets = compileBackendPolicies([policy('p', '', { targetRefs: web, retryConstraint: { budget: { percent: 7 } } })], service).budgets;
  const r = compileRoute({
    kind: 'HTTPRoute',
    route: {
      metadata: { name: 'r', namespace: 'a', generation: 1 },
      spec: {
        parentRefs: [{ kind: 'Service', name: 'web', port: 80 }],
        rules: [{ backendRefs: [{ name: 'web', port: 80 }, { name: 'api', port: 80 }, { name: 'web', port: 81 }] }],
      },
    },
    service,
    retryBudget: (k) => budgets.get(k),
  });
  t.same(
    r.compiled?.rules[0]?.backends.map((b) => b.retryBudget?.percent),
    [7, undefined, undefined],
    "a/web's backendRef has the policy's budget; a/api has none; the port a/web lacks did not resolve",
  );
});
