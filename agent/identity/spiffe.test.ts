import t from 'tap';
import { IdentityError } from './errors.ts';
import { formatSpiffeId, isSpiffeId, parseSpiffeId } from './spiffe.ts';

t.test('format and parse round-trip', async (t) => {
  const id = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'checkout.v2' };
  const uri = formatSpiffeId(id);
  t.equal(uri, 'spiffe://cluster.local/ns/shop/sa/checkout.v2');
  t.same(parseSpiffeId(uri), id);
  t.ok(isSpiffeId('spiffe://td_1-x.example/ns/a/sa/b'));
  t.ok(isSpiffeId(`spiffe://cluster.local/ns/${'a'.repeat(63)}/sa/b`), 'a 63-character namespace');
});

t.test('anything but the one canonical spelling is refused', async (t) => {
  const refused = [
    '',
    'spiffe://',
    'SPIFFE://cluster.local/ns/a/sa/b', // scheme case
    'spiffe://Cluster.local/ns/a/sa/b', // trust domain case
    'spiffe://cluster.local:443/ns/a/sa/b', // port
    'spiffe://user@cluster.local/ns/a/sa/b', // userinfo
    'spiffe://cluster.local/ns/a/sa/b/', // trailing slash
    'spiffe://cluster.local/ns/a/sa/b?x=1', // query
    'spiffe://cluster.local/ns/a/sa/b#f', // fragment
    'spiffe://cluster.local/ns/a%2Fb/sa/b', // percent-encoding
    'spiffe://cluster.local/ns//sa/b', // empty segment
    'spiffe://cluster.local/ns/../sa/b', // dot segment
    'spiffe://cluster.local/sa/b/ns/a', // order
    'spiffe://cluster.local/ns/a/sa/b/extra/x',
    'spiffe://cluster.local/ns/-a/sa/b', // label must start alphanumeric
    `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/b`, // label too long
    'spiffe://cluster.local/ns/a/sa/B',
    ' spiffe://cluster.local/ns/a/sa/b',
    'https://cluster.local/ns/a/sa/b',
  ];
  for (const uri of refused) {
    t.notOk(isSpiffeId(uri), `refused: ${JSON.stringify(uri)}`);
  }
  t.throws(() => parseSpiffeId('spiffe://x/ns/a'), { code: 'SPIFFE_ID_INVALID' });
  t.throws(() => formatSpiffeId({ trustDomain: 'td', namespace: 'A', serviceAccount: 'b' }), IdentityError);
});
