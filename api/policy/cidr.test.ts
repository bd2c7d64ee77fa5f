// cidr.ts: strict parsing that agrees with the API server's CEL isIP/isCIDR (the CRD test sends the
// same edge cases to a real one), canonical text, and containment.
import t from 'tap';
import { cidrContains, formatCidr, formatIp, isCidr, isIp, masked, parseCidr, parseIp } from './cidr.ts';

t.test('addresses: what parses, and the canonical text it prints as', async (t) => {
  const good: [string, string][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::', '::'],
    ['::1', '::1'],
    ['FD00::0001', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0'],
    ['fe80::', 'fe80::'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ];
  for (const [text, canonical] of good) {
    const b = parseIp(text);
    t.ok(b, `${text} parses`);
    if (b) t.equal(formatIp(b), canonical, `${text} → ${canonical}`);
  }
  const bad = ['', '10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.1 ', '1::2::3', ':::', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', '::ffff:10.0.0.1', 'g::1', '12345::', 'localhost'];
  for (const text of bad) t.notOk(isIp(text), `${JSON.stringify(text)} is refused`);
});

t.test('CIDRs: prefix bounds, masking and canonical text', async (t) => {
  t.ok(isCidr('10.0.0.0/8'));
  t.ok(isCidr('0.0.0.0/0'));
  t.ok(isCidr('::/0'));
  t.ok(isCidr('fd00::/128'));
  t.ok(isCidr('10.1.2.3/8'), 'host bits set: accepted, as the API server accepts it');
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '::/129', '10.0.0.0/08', '10.0.0.0/', '/8', '::ffff:10.0.0.0/104', '10.0.0.0/8/8']) t.notOk(isCidr(bad), `${bad} is refused`);
  const c = parseCidr('10.1.2.3/12');
  if (!c) return t.fail('no parse');
  t.equal(formatCidr(masked(c)), '10.0.0.0/12');
  t.equal(formatCidr(masked(parseCidr('FD00:1:2:3::5/33') ?? c)), 'fd00:1::/33');
  t.equal(formatCidr(masked(parseCidr('10.0.0.7/0') ?? c)), '0.0.0.0/0');
});

t.test('containment, as the API server\'s cidr().containsCIDR()', async (t) => {
  t.ok(cidrContains('10.0.0.0/8', '10.1.0.0/16'));
  t.ok(cidrContains('10.0.0.0/8', '10.0.0.0/8'), 'a block contains itself');
  t.ok(cidrContains('10.1.2.3/8', '10.200.0.0/16'), 'host bits of the outer block do not matter');
  t.notOk(cidrContains('10.0.0.0/16', '10.1.0.0/24'));
  t.notOk(cidrContains('10.0.0.0/16', '10.0.0.0/8'), 'a larger block is not inside');
  t.notOk(cidrContains('10.0.0.0/8', 'fd00::/8'), 'another family is not inside');
  t.ok(cidrContains('fd00::/8', 'fd12:3456::/32'));
  t.notOk(cidrContains('fd00::/16', 'fd01::/32'));
  t.notOk(cidrContains('nonsense', '10.0.0.0/8'));
});
