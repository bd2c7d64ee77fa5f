import t from 'tap';
import { canonicalIp, formatAuthority, parseAuthority } from './authority.ts';

t.test('parses IPv4 and bracketed IPv6 authorities', async (t) => {
  t.same(parseAuthority('10.0.0.7:8080'), { ip: '10.0.0.7', port: 8080 });
  t.same(parseAuthority('[fd00::7]:443'), { ip: 'fd00::7', port: 443 });
  t.same(parseAuthority('[FD00:0:0::7]:443'), { ip: 'fd00::7', port: 443 }, 'IPv6 in one canonical spelling');
  t.same(parseAuthority('[::ffff:10.0.0.7]:80'), { ip: '10.0.0.7', port: 80 }, 'IPv4-mapped IPv6 as IPv4');
  t.same(parseAuthority('1.2.3.4:65535'), { ip: '1.2.3.4', port: 65535 });
});

t.test('refuses anything that is not an IP literal and a port', async (t) => {
  for (const authority of [
    undefined,
    '',
    'checkout.shop.svc:8080',
    '10.0.0.7',
    '10.0.0.7:',
    '10.0.0.7:0',
    '10.0.0.7:65536',
    '10.0.0.7:080',
    '10.0.0.7:+80',
    '010.0.0.7:80',
    'fd00::7:443',
    '[fd00::7]',
    '[fe80::1%eth0]:80',
    '[10.0.0.7]:80',
    'user@10.0.0.7:80',
  ]) {
    t.equal(parseAuthority(authority), undefined, `refused: ${JSON.stringify(authority)}`);
  }
});

t.test('formats what it parses', async (t) => {
  t.equal(formatAuthority({ ip: '10.0.0.7', port: 80 }), '10.0.0.7:80');
  t.equal(formatAuthority({ ip: 'fd00::7', port: 80 }), '[fd00::7]:80');
  t.equal(canonicalIp('::ffff:192.168.1.1'), '192.168.1.1');
  t.equal(canonicalIp('10.1.2.3'), '10.1.2.3');
});
