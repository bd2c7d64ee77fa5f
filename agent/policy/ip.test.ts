import net from 'node:net';
import t from 'tap';
import { cidrContains, parseCidr, parseIp } from './ip.ts';

function contains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const a = parseIp(ip);
  if (!c || !a) throw new Error(`fixture does not parse: ${cidr} ${ip}`);
  return cidrContains(c, a);
}

t.test('parses what Node calls an IP, and nothing else', async (t) => {
  const good = ['0.0.0.0', '10.1.2.3', '255.255.255.255', '::', '::1', '1::', 'fd00::7', 'FD00:0:0::7', '2001:db8:0:0:0:0:2:1', '::ffff:10.0.0.7', '64:ff9b::192.0.2.33', '1:2:3:4:5:6:7:8'];
  const bad = ['', '10.1.2', '10.1.2.3.4', '256.1.1.1', '01.1.1.1', '1.1.1.1 ', '10.1.2.-1', ':', ':::', '1:::2', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::1', 'fe80::1%eth0', '[::1]', '1:2:3:4:5:6:7:8:', '::ffff:1.2.3'];
  for (const ip of good) t.ok(parseIp(ip), `parses ${ip}`);
  for (const ip of bad) {
    t.equal(parseIp(ip), undefined, `refuses ${JSON.stringify(ip)}`);
    t.equal(net.isIP(ip) !== 0 && !ip.includes('%'), false, `Node agrees about ${JSON.stringify(ip)}`);
  }
});

t.test('IPv4 containment, edges included', async (t) => {
  t.ok(contains('10.0.0.0/8', '10.255.255.255'));
  t.ok(contains('10.0.0.0/8', '10.0.0.0'));
  t.notOk(contains('10.0.0.0/8', '11.0.0.0'));
  t.notOk(contains('10.0.0.0/8', '9.255.255.255'));
  t.ok(contains('0.0.0.0/0', '203.0.113.9'));
  t.ok(contains('192.168.1.7/32', '192.168.1.7'));
  t.notOk(contains('192.168.1.7/32', '192.168.1.8'));
  t.ok(contains('192.168.1.7', '192.168.1.7'), 'a bare address is a /32');
  t.ok(contains('128.0.0.0/1', '200.1.1.1'), 'high bit set (sign of 32-bit words)');
  t.notOk(contains('128.0.0.0/1', '127.255.255.255'));
  t.ok(contains('10.1.2.3/8', '10.9.9.9'), 'host bits in the CIDR are masked off');
  t.ok(contains('172.16.0.0/12', '172.31.255.255'));
  t.notOk(contains('172.16.0.0/12', '172.32.0.0'));
});

t.test('IPv6 containment, edges included', async (t) => {
  t.ok(contains('fd00::/8', 'fdff:ffff::1'));
  t.notOk(contains('fd00::/8', 'fe00::1'));
  t.ok(contains('::/0', '2001:db8::1'));
  t.ok(contains('2001:db8::/32', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'));
  t.notOk(contains('2001:db8::/32', '2001:db9::'));
  t.ok(contains('2001:db8::1/128', '2001:db8::1'));
  t.notOk(contains('2001:db8::1/128', '2001:db8::2'));
  t.ok(contains('2001:db8::/127', '2001:db8::1'));
  t.notOk(contains('2001:db8::/127', '2001:db8::2'));
  t.ok(contains('2001:db8:0:1::/64', '2001:db8:0:1:ffff::'), 'boundary inside the second word');
  t.notOk(contains('2001:db8:0:1::/64', '2001:db8:0:2::'));
  t.ok(contains('2001:db8::/33', '2001:db8:7fff::'));
  t.notOk(contains('2001:db8::/33', '2001:db8:8000::'));
});

t.test('families never mix, except IPv4-mapped IPv6 which is IPv4', async (t) => {
  t.notOk(contains('::/0', '10.0.0.1'), 'IPv4 is not in ::/0');
  t.notOk(contains('0.0.0.0/0', 'fd00::1'), 'IPv6 is not in 0.0.0.0/0');
  t.ok(contains('10.0.0.0/8', '::ffff:10.1.2.3'), 'a dual-stack socket peer');
  t.ok(contains('10.0.0.0/8', '::ffff:a01:203'), 'mapped, hex spelling');
  t.ok(contains('::ffff:10.0.0.0/104', '10.200.0.1'), 'a mapped CIDR is the IPv4 block');
  t.notOk(contains('::ffff:10.0.0.0/104', '11.0.0.1'));
});

t.test('refuses malformed CIDRs', async (t) => {
  for (const c of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/08', 'fd00::/129', 'fd00::/1a', 'x/8', '::ffff:10.0.0.0/95']) {
    t.equal(parseCidr(c), undefined, `refuses ${c}`);
  }
});
