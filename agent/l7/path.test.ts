// What policy sees as the path and the host: normalization that closes the usual bypasses of a
// path rule, the three HTTP/1.1 request-target forms, and host spellings.
import t from 'tap';
import { DEFAULT_PATH_OPTIONS, normalizePath } from './path.ts';
import { hostOf, parseRequestTarget } from './request-info.ts';

const normalized = (target: string): string => {
  const n = normalizePath(target);
  return n.ok ? n.path + n.query : `error: ${n.reason}`;
};

t.test('spellings of /admin that backends serve as /admin all normalize to /admin', async (t) => {
  for (const spelling of ['/admin', '//admin', '///admin', '/./admin', '/a/../admin', '/a/b/../../admin', '/../admin', '/%61dmin', '/%61%64%6D%69%6E', '/%2e/admin', '/%2E%2E/admin', '/a/%2e%2e/admin', '/.//admin']) {
    t.equal(normalized(spelling), '/admin', spelling);
  }
});

t.test('encoded separators and backslashes are refused, not guessed', async (t) => {
  for (const target of ['/admin%2Fx', '/admin%2fx', '/%2Fadmin', '/a%5Cb', '/a%5cb', '/a\\b', '/\\admin']) {
    const n = normalizePath(target);
    t.equal(n.ok, false, target);
  }
});

t.test('malformed escapes and targets that are not a path are refused', async (t) => {
  for (const target of ['/a%', '/a%4', '/a%zz', '/a%g1', 'admin', '', '?x=1']) {
    t.equal(normalizePath(target).ok, false, JSON.stringify(target));
  }
});

t.test('the query is kept as sent, the fragment dropped, and only the path normalized', async (t) => {
  t.same(normalizePath('/a/./b?x=/../y&%61=1#frag'), { ok: true, path: '/a/b', query: '?x=/../y&%61=1' });
  t.same(normalizePath('/p#f?not-a-query'), { ok: true, path: '/p', query: '' });
  t.same(normalizePath('/p?'), { ok: true, path: '/p', query: '?' });
});

t.test('only unreserved characters are decoded; other escapes stay, with upper-case hex', async (t) => {
  t.equal(normalized('/caf%c3%a9'), '/caf%C3%A9');
  t.equal(normalized('/a%20b'), '/a%20b');
  t.equal(normalized('/%7euser/%5f'), '/~user/_');
  t.equal(normalized('/%252F'), '/%252F', 'decoded once: %25 stays an escape, so no double decoding');
  t.equal(normalized('/a%3Fb'), '/a%3Fb', 'an encoded ? is part of the path, not a query');
});

t.test('dot segments and slashes: trailing slashes are kept, the root is never left', async (t) => {
  t.equal(normalized('/'), '/');
  t.equal(normalized('/a/b/'), '/a/b/');
  t.equal(normalized('/a//b//'), '/a/b/');
  t.equal(normalized('/a/b/..'), '/a/');
  t.equal(normalized('/a/b/.'), '/a/b/');
  t.equal(normalized('/a/..'), '/');
  t.equal(normalized('/../../..'), '/');
  t.equal(normalized('/.well-known/x'), '/.well-known/x');
  t.equal(normalized('/a/..b/c.'), '/a/..b/c.');
});

t.test('a path that needs nothing is returned as the same string', async (t) => {
  const target = '/api/v1/items/42';
  const n = normalizePath(target);
  t.ok(n.ok && n.path === target);
});

t.test('HTTP/1.1 request targets: origin-form, absolute-form, asterisk', async (t) => {
  t.same(parseRequestTarget('GET', '/x/../y?q=1'), { ok: true, path: '/y', forward: '/y?q=1', authority: undefined, scheme: 'http' });
  t.same(parseRequestTarget('GET', 'http://Shop.Example:8080//admin?q'), { ok: true, path: '/admin', forward: '/admin?q', authority: 'Shop.Example:8080', scheme: 'http' });
  t.same(parseRequestTarget('GET', 'http://shop.example'), { ok: true, path: '/', forward: '/', authority: 'shop.example', scheme: 'http' });
  t.same(parseRequestTarget('OPTIONS', '*'), { ok: true, path: '*', forward: '*', authority: undefined, scheme: 'http' });
  t.equal(parseRequestTarget('GET', '*').ok, false, '* is for OPTIONS only');
  t.equal(parseRequestTarget('GET', 'http://user@shop.example/').ok, false, 'userinfo is refused');
  t.equal(parseRequestTarget('CONNECT', 'shop.example:443').ok, false, 'authority-form is not a path');
  const bad = parseRequestTarget('GET', '/a%2Fb?x');
  t.same(bad.ok ? undefined : bad.path, '/a%2Fb', 'a refused target still reports its path for the log');
});

t.test('hosts: lower-case, no port, no trailing dot, IPv6 brackets kept', async (t) => {
  t.equal(hostOf('Shop.Example:8080'), 'shop.example');
  t.equal(hostOf('shop.example.'), 'shop.example');
  t.equal(hostOf('shop.example.:80'), 'shop.example');
  t.equal(hostOf('10.0.0.7:8080'), '10.0.0.7');
  t.equal(hostOf('[FD00::1]:8080'), '[fd00::1]');
  t.equal(hostOf('[fd00::1]'), '[fd00::1]');
  t.equal(hostOf(undefined), '');
});

t.test('options: path parameters refused, cut before dot segments, or kept', async (t) => {
  const strip = { ...DEFAULT_PATH_OPTIONS, pathParameters: 'strip' } as const;
  const keep = { ...DEFAULT_PATH_OPTIONS, pathParameters: 'keep' } as const;
  t.equal(normalizePath('/admin;x').ok, false, 'refused by default');
  const cut = (p: string): string => {
    const n = normalizePath(p, strip);
    return n.ok ? n.path : n.reason;
  };
  t.equal(cut('/admin;x'), '/admin');
  t.equal(cut('/public/..;/admin'), '/admin', 'the Tomcat bypass: parameters go before ".." is resolved');
  t.equal(cut('/a;b=c/d;e'), '/a/d');
  t.equal(cut('/;x/admin'), '/admin');
  t.same(normalizePath('/public/..;/admin', keep), { ok: true, path: '/public/..;/admin', query: '' });
});

t.test('options: escaped slashes decoded, slashes kept, case folded', async (t) => {
  const decode = { ...DEFAULT_PATH_OPTIONS, escapedSlashes: 'decode' } as const;
  t.same(normalizePath('/a%2Fb%5Cc\\d', decode), { ok: true, path: '/a/b/c/d', query: '' });
  t.same(normalizePath('/a%2F..%2Fadmin', decode), { ok: true, path: '/admin', query: '' });
  const unmerged = { ...DEFAULT_PATH_OPTIONS, mergeSlashes: false };
  t.same(normalizePath('//a//b/./../c', unmerged), { ok: true, path: '//a//c', query: '' });
  const folded = { ...DEFAULT_PATH_OPTIONS, caseInsensitive: true };
  t.same(normalizePath('/ADMIN/Caf%c3%a9?Q=A', folded), { ok: true, path: '/admin/caf%C3%A9', query: '?Q=A' }, 'escapes keep upper-case hex, the query is untouched');
});
