import t from 'tap';
import { modifyHeaders, redirectLocation, rewritePath, type HeaderMap } from './filters.ts';

t.test('header modifier: set replaces, add appends, remove drops, names case-insensitive', async (t) => {
  const h: HeaderMap = { 'x-a': '1', 'x-b': '2', 'x-c': '3' };
  modifyHeaders(h, { set: [{ name: 'X-A', value: 'one' }], add: [{ name: 'x-b', value: 'two' }, { name: 'x-new', value: 'n' }], remove: ['X-C'] });
  t.same(h, { 'x-a': 'one', 'x-b': '2,two', 'x-new': 'n' });
});

t.test('path rewrites', async (t) => {
  const prefix = (value: string) => ({ path: { type: 'PathPrefix' as const, value }, headers: [], queryParams: [] });
  t.equal(rewritePath('/prefix/one/two', { type: 'ReplacePrefixMatch', value: '/one' }, prefix('/prefix/one')), '/one/two');
  t.equal(rewritePath('/strip/three', { type: 'ReplacePrefixMatch', value: '/' }, prefix('/strip')), '/three');
  t.equal(rewritePath('/strip', { type: 'ReplacePrefixMatch', value: '/' }, prefix('/strip')), '/');
  t.equal(rewritePath('/strip/', { type: 'ReplacePrefixMatch', value: '/x' }, prefix('/strip/')), '/x/');
  t.equal(rewritePath('/anything', { type: 'ReplaceFullPath', value: '/full' }, prefix('/')), '/full');
});

t.test('redirect location keeps what the filter does not change', async (t) => {
  const match = { headers: [], queryParams: [] };
  const req = { host: 'svc.ns:8080', path: '/p', query: 'a=1' };
  t.same(redirectLocation({ type: 'RequestRedirect', statusCode: 302 }, req, match), { status: 302, location: 'http://svc.ns:8080/p?a=1' });
  t.equal(redirectLocation({ type: 'RequestRedirect', statusCode: 301, scheme: 'https' }, req, match).location, 'https://svc.ns/p?a=1', 'a new scheme drops the port for its default');
  t.equal(redirectLocation({ type: 'RequestRedirect', statusCode: 301, hostname: 'other', port: 80 }, req, match).location, 'http://other/p?a=1');
  t.equal(redirectLocation({ type: 'RequestRedirect', statusCode: 301, port: 9000 }, { host: '[fd00::1]:80', path: '/', query: '' }, match).location, 'http://[fd00::1]:9000/');
});
