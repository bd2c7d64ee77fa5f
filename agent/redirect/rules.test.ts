// The rendered ruleset, without a kernel: what is captured on which path, and in which order.
import t from 'tap';
import { BYPASS_MARK, PORTS, probeElementsOf, renderAdd, renderRemove, renderServices, renderTable } from './rules.ts';

const pod = { hostInterface: 'veth1', ips: ['10.1.0.2', 'fd00::2'], probePorts: [9090, 8080, 8080] };

/** The lines of one chain, trimmed, in order. */
function chain(table: string, name: string): string[] {
  const start = table.indexOf(`  chain ${name} {`);
  if (start < 0) return [];
  const end = table.indexOf('\n  }', start);
  return table.slice(start, end).split('\n').slice(1).map((l) => l.trim());
}

t.test('the node output path is captured, after the agent and the probes are let through', async (t) => {
  const out = chain(renderTable([pod]), 'output');
  t.match(out[0], /type nat hook output priority -110;/, 'before kube-proxy (dstnat, -100)');
  t.strictSame(out.slice(1), [
    `meta mark ${BYPASS_MARK} return`,
    'ip daddr . tcp dport @probes4 return',
    `ip daddr @pod_ips4 tcp dport ${PORTS.hbone} redirect to :${PORTS.hbone}`,
    `ip daddr @pod_ips4 meta l4proto tcp redirect to :${PORTS.inboundPlaintext}`,
    `ip daddr . tcp dport @svc4 redirect to :${PORTS.inboundPlaintext}`,
  ]);
});

t.test('Service addresses backed by local pods are captured from the node (kube-proxy DNATs after us)', async (t) => {
  const services = [
    { ip: '10.96.0.20', port: 80 },
    { ip: '10.96.0.10', port: 443 },
    { ip: '10.96.0.20', port: 80 },
  ];
  t.match(renderTable([pod], { services }), 'set svc4 { type ipv4_addr . inet_service; elements = { 10.96.0.10 . 443, 10.96.0.20 . 80 } }');
  t.equal(renderServices(services), 'flush set inet weft svc4\nadd element inet weft svc4 { 10.96.0.10 . 443, 10.96.0.20 . 80 }\n', 'replaced in one transaction');
  t.equal(renderServices([]), 'flush set inet weft svc4\n', 'none left: only the flush');
  t.throws(() => renderServices([{ ip: '10.96.0.300', port: 80 }]), { code: 'BAD_IP' });
  t.notMatch(chain(renderTable([pod], { services }), 'prerouting').join('\n'), 'svc4', 'traffic that arrives is not: it was translated on its own node');
});

t.test('probe exemptions are (IPv4 address . port) pairs, unique and checked', async (t) => {
  t.strictSame(probeElementsOf(pod), ['10.1.0.2 . 8080', '10.1.0.2 . 9090'], 'IPv6 addresses are never exempt');
  t.match(renderTable([pod]), 'set probes4 { type ipv4_addr . inet_service; elements = { 10.1.0.2 . 8080, 10.1.0.2 . 9090 } }');
  t.match(renderTable([]), 'set probes4 { type ipv4_addr . inet_service;  }', 'an empty set still exists');
  t.throws(() => probeElementsOf({ ...pod, probePorts: [0] }), { code: 'BAD_PORT' });
  t.throws(() => probeElementsOf({ ...pod, probePorts: [65536] }), { code: 'BAD_PORT' });
  t.strictSame(probeElementsOf({ hostInterface: 'veth1', ips: ['10.1.0.2'] }), [], 'an enrolment from before probes were known exempts nothing');
});

t.test('enrolling and releasing a pod add and remove its probe pairs in the same transaction', async (t) => {
  t.match(renderAdd(pod), 'add element inet weft probes4 { 10.1.0.2 . 8080, 10.1.0.2 . 9090 }');
  t.match(renderRemove(pod), 'delete element inet weft probes4 { 10.1.0.2 . 9090 }');
  t.notMatch(renderAdd({ ...pod, probePorts: [] }), 'probes4', 'no empty element list (nft refuses it)');
});

t.test('captureNode: false leaves the node output path alone', async (t) => {
  const table = renderTable([pod], { captureNode: false });
  t.strictSame(chain(table, 'output'), []);
  t.strictSame(chain(table, 'ipv6_output'), []);
  t.ok(chain(table, 'prerouting').length > 0, 'traffic that arrives is captured as before');
  t.ok(chain(table, 'ipv6_forward').length > 0, 'and IPv6 stays closed for it');
});

t.test('IPv6 TCP to and from enrolled pods is reset on every path, by interface', async (t) => {
  const table = renderTable([pod]);
  t.strictSame(chain(table, 'ipv6_forward').slice(1), [
    'meta nfproto ipv6 iifname @pod_ifaces tcp flags & (syn | ack) == syn reject with tcp reset',
    'meta nfproto ipv6 oifname @pod_ifaces tcp flags & (syn | ack) == syn reject with tcp reset',
  ]);
  t.strictSame(chain(table, 'ipv6_input').slice(1), ['meta nfproto ipv6 iifname @pod_ifaces tcp flags & (syn | ack) == syn reject with tcp reset']);
  t.strictSame(chain(table, 'ipv6_output').slice(1), ['meta nfproto ipv6 oifname @pod_ifaces tcp flags & (syn | ack) == syn reject with tcp reset']);
  t.match(chain(table, 'prerouting'), [/^type nat/, /^meta mark/, 'iifname @pod_ifaces meta nfproto ipv4 meta l4proto tcp redirect to :15001'], 'outbound capture is IPv4 only');
  t.notMatch(table, 'fd00::2', 'IPv6 addresses are never rendered: interfaces cover them, even ones added by hand');
});
