import t from 'tap';
import { compilePatterns, matchesPattern } from './pattern.ts';

const m = (patterns: string[], value: string | undefined, lowerCase = false) => matchesPattern(compilePatterns(patterns, lowerCase), value);

t.test('exact, prefix, suffix and presence', async (t) => {
  t.ok(m(['/health'], '/health'));
  t.notOk(m(['/health'], '/healthz'));
  t.ok(m(['/api/*'], '/api/'), 'a prefix matches itself');
  t.ok(m(['/api/*'], '/api/v1/users'));
  t.notOk(m(['/api/*'], '/api'), 'no trailing slash, no match (Istio)');
  t.notOk(m(['/api/*'], '/apiv2'));
  t.ok(m(['*.css'], '/static/site.css'));
  t.notOk(m(['*.css'], '/static/site.js'));
  t.ok(m(['*'], 'x'));
  t.notOk(m(['*'], ''), '`*` needs a non-empty value');
  t.notOk(m(['*'], undefined), '`*` needs a value');
  t.notOk(m(['/a'], undefined));
  t.ok(m(['/a', '/b/*', '*.png'], '/b/c'), 'any of the values');
  t.ok(m(['a*b'], 'a*b'), 'a star in the middle is a literal');
  t.notOk(m(['a*b'], 'axb'));
});

t.test('case: exact by default, folded for hosts', async (t) => {
  t.notOk(m(['GET'], 'get'));
  t.ok(m(['Shop.Example'], 'shop.example', true));
  t.ok(m(['*.Example'], 'api.example', true));
  t.ok(m(['API.*'], 'api.example', true));
});
