import t from 'tap';
import type { LabelSelector } from './model.ts';
import { isEmptySelector, matchesLabelSelector, policySelects } from './selector.ts';

const sel = (matchLabels: Record<string, string>, matchExpressions: LabelSelector['matchExpressions'] = []): LabelSelector => ({ matchLabels, matchExpressions });
const labels = { app: 'web', tier: 'front' };

t.test('an empty selector selects everything, even no labels', async (t) => {
  t.ok(matchesLabelSelector(sel({}), labels));
  t.ok(matchesLabelSelector(sel({}), {}));
  t.ok(isEmptySelector(sel({})));
  t.notOk(isEmptySelector(sel({ app: 'web' })));
  t.notOk(isEmptySelector(sel({}, [{ key: 'app', operator: 'Exists', values: [] }])));
});

t.test('matchLabels: every pair must be present and equal', async (t) => {
  t.ok(matchesLabelSelector(sel({ app: 'web' }), labels));
  t.ok(matchesLabelSelector(sel({ app: 'web', tier: 'front' }), labels));
  t.notOk(matchesLabelSelector(sel({ app: 'web', tier: 'back' }), labels), 'one pair differs');
  t.notOk(matchesLabelSelector(sel({ zone: 'a' }), labels), 'key absent');
  t.notOk(matchesLabelSelector(sel({ app: '' }), labels), 'empty value is a value');
  t.ok(matchesLabelSelector(sel({ app: '' }), { app: '' }));
});

t.test('matchExpressions with Kubernetes semantics', async (t) => {
  const cases: [LabelSelector['matchExpressions'][number], Record<string, string>, boolean][] = [
    [{ key: 'app', operator: 'In', values: ['web', 'api'] }, labels, true],
    [{ key: 'app', operator: 'In', values: ['api'] }, labels, false],
    [{ key: 'zone', operator: 'In', values: ['a'] }, labels, false],
    [{ key: 'app', operator: 'In', values: [] }, labels, false],
    [{ key: 'app', operator: 'NotIn', values: ['api'] }, labels, true],
    [{ key: 'app', operator: 'NotIn', values: ['web'] }, labels, false],
    [{ key: 'zone', operator: 'NotIn', values: ['a'] }, labels, true], // absent key: NotIn holds
    [{ key: 'app', operator: 'Exists', values: [] }, labels, true],
    [{ key: 'zone', operator: 'Exists', values: [] }, labels, false],
    [{ key: 'zone', operator: 'DoesNotExist', values: [] }, labels, true],
    [{ key: 'app', operator: 'DoesNotExist', values: [] }, labels, false],
  ];
  for (const [req, l, want] of cases) t.equal(matchesLabelSelector(sel({}, [req]), l), want, `${req.key} ${req.operator} ${JSON.stringify(req.values)}`);
});

t.test('labels and expressions are ANDed', async (t) => {
  const s = sel({ app: 'web' }, [
    { key: 'tier', operator: 'In', values: ['front'] },
    { key: 'canary', operator: 'DoesNotExist', values: [] },
  ]);
  t.ok(matchesLabelSelector(s, labels));
  t.notOk(matchesLabelSelector(s, { ...labels, canary: 'true' }));
  t.notOk(matchesLabelSelector(s, { ...labels, app: 'api' }));
});

t.test('inherited properties are not labels', async (t) => {
  t.notOk(matchesLabelSelector(sel({}, [{ key: 'constructor', operator: 'Exists', values: [] }]), {}));
  t.ok(matchesLabelSelector(sel({}, [{ key: 'toString', operator: 'DoesNotExist', values: [] }]), {}));
  t.notOk(matchesLabelSelector(sel({}, [{ key: 'x', operator: 'Bogus' as 'In', values: [] }]), { x: '1' }), 'an unknown operator selects nothing');
});

t.test('policySelects: scope, namespace and selector', async (t) => {
  const web = { namespace: 'shop', labels: { app: 'web' } };
  const db = { namespace: 'data', labels: { app: 'db' } };
  const sys = 'weft-system';
  t.ok(policySelects({ namespace: sys, scope: 'mesh' }, web, sys), 'mesh-wide from the install namespace');
  t.ok(policySelects({ namespace: sys, scope: 'mesh' }, db, sys));
  t.notOk(policySelects({ namespace: sys, scope: 'mesh', selector: sel({ app: 'web' }) }, db, sys), 'a mesh selector filters');
  t.notOk(policySelects({ namespace: 'shop', scope: 'mesh' }, db, sys), '`mesh` elsewhere stays in its namespace');
  t.ok(policySelects({ namespace: 'shop', scope: 'mesh' }, web, sys));
  t.ok(policySelects({ namespace: 'shop', scope: 'namespace' }, web, sys));
  t.notOk(policySelects({ namespace: 'shop', scope: 'namespace' }, db, sys));
  t.ok(policySelects({ namespace: 'shop', scope: 'workload', selector: sel({ app: 'web' }) }, web, sys));
  t.notOk(policySelects({ namespace: 'shop', scope: 'workload', selector: sel({ app: 'api' }) }, web, sys));
  t.notOk(policySelects({ namespace: 'data', scope: 'workload', selector: sel({ app: 'web' }) }, web, sys), 'labels match, namespace does not');
});
