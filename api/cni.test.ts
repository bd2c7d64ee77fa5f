import t from 'tap';
import {
  CniContractError,
  decideMeshed,
  parseErrorBody,
  parseGcRequest,
  parsePodAddRequest,
  parsePodAddResponse,
  parsePodDelRequest,
  parseStatusResponse,
  parseWeftCniSettings,
} from './cni.ts';

const goodAdd = {
  pod: { namespace: 'shop', name: 'cart-7d9f-abcde', uid: '0b7c2c0e-1111-2222-3333-444455556666' },
  containerId: 'cnitool-0123abcd',
  ifname: 'eth0',
  netns: '/run/netns/x',
  ips: ['10.1.0.5', 'fd00::5'],
  hostInterface: 'veth1234',
};

t.test('a well-formed ADD request comes back typed, without unknown fields', async (t) => {
  const parsed = parsePodAddRequest({ ...goodAdd, extra: 'ignored', pod: { ...goodAdd.pod, more: 1 } });
  t.same(parsed, goodAdd);
  t.notOk('extra' in parsed, 'unknown top-level field dropped');
  t.notOk('more' in parsed.pod, 'unknown nested field dropped');
  t.same(parsePodAddRequest({ ...goodAdd, hostInterface: null }).hostInterface, null);
});

t.test('malformed ADD requests are refused with the path of the problem', async (t) => {
  const cases: [unknown, RegExp][] = [
    [null, /^\$: must be an object/],
    [{ ...goodAdd, pod: undefined }, /^\$\.pod: must be an object/],
    [{ ...goodAdd, pod: { ...goodAdd.pod, namespace: 'Bad_NS' } }, /^\$\.pod\.namespace: must match/],
    [{ ...goodAdd, ips: [] }, /^\$\.ips: must list at least one/],
    [{ ...goodAdd, ips: ['10.1.0.5/24'] }, /^\$\.ips\[0\]: must be an IPv4 or IPv6 address/],
    [{ ...goodAdd, containerId: '-starts-with-dash' }, /^\$\.containerId: must match/],
    [{ ...goodAdd, ifname: 'a-very-long-interface-name' }, /^\$\.ifname: must match/],
    [{ ...goodAdd, netns: 42 }, /^\$\.netns: must be a string/],
  ];
  for (const [input, message] of cases) {
    t.throws(() => parsePodAddRequest(input), message);
    t.throws(() => parsePodAddRequest(input), CniContractError);
  }
});

t.test('DEL may come without a netns and without addresses', async (t) => {
  const del = parsePodDelRequest({ pod: goodAdd.pod, containerId: 'c1', ifname: 'eth0', netns: null, ips: [] });
  t.equal(del.netns, null);
  t.same(del.ips, []);
  t.throws(() => parsePodDelRequest({ pod: goodAdd.pod, containerId: 'c1', ifname: 'eth0', ips: [] }), /\$\.netns/);
});

t.test('GC, answers and error bodies are checked too', async (t) => {
  t.same(parseGcRequest({ validAttachments: [{ containerId: 'c1', ifname: 'eth0' }] }), {
    validAttachments: [{ containerId: 'c1', ifname: 'eth0' }],
  });
  t.throws(() => parseGcRequest({ validAttachments: [{ containerId: 'c1' }] }), /validAttachments\[0\]\.ifname/);
  t.same(parsePodAddResponse({ result: 'notMeshed', reason: 'opted out' }), { result: 'notMeshed', reason: 'opted out' });
  t.throws(() => parsePodAddResponse({ result: 'maybe' }), /\$\.result: must be one of/);
  t.same(parseStatusResponse({ ready: false, reason: 'syncing' }), { ready: false, reason: 'syncing' });
  t.throws(() => parseStatusResponse({ ready: 'yes' }), /\$\.ready/);
  t.same(parseErrorBody({ error: { code: 'NOT_READY', message: 'x' } }), { error: { code: 'NOT_READY', message: 'x' } });
  t.throws(() => parseErrorBody({ error: { code: 'TEAPOT', message: 'x' } }), /\$\.error\.code/);
});

t.test('plugin settings get defaults and are validated', async (t) => {
  const d = parseWeftCniSettings({ type: 'weft-cni' });
  t.same(d, {
    agentSocket: '/var/run/weft/cni.sock',
    timeoutMs: 5000,
    logFile: null,
    logLevel: 'info',
    excludeNamespaces: ['kube-system'],
    kubernetes: null,
  });
  const full = parseWeftCniSettings({
    agentSocket: '/run/w.sock',
    timeoutMs: 250,
    logFile: '/var/log/weft-cni.log',
    excludeNamespaces: [],
    kubernetes: { apiServer: 'https://10.96.0.1:443/', caFile: '/etc/weft/ca.crt', tokenFile: '/etc/weft/token' },
  });
  t.equal(full.kubernetes?.apiServer, 'https://10.96.0.1:443', 'trailing slash removed');
  t.same(full.excludeNamespaces, [], 'an empty exclusion list is honoured');
  t.throws(() => parseWeftCniSettings({ timeoutMs: 10 }), /timeoutMs: must be between/);
  t.throws(() => parseWeftCniSettings({ agentSocket: 'relative.sock' }), /agentSocket: must be an absolute path/);
  t.throws(
    () => parseWeftCniSettings({ kubernetes: { apiServer: 'http://plain', caFile: '/a', tokenFile: '/b' } }),
    /apiServer: must be an https/,
  );
});

t.test('opt-in: the pod annotation wins over the namespace label', async (t) => {
  t.equal(decideMeshed({}, {}).meshed, false);
  t.equal(decideMeshed({}, { 'weft.dev/mesh': 'enabled' }).meshed, true);
  t.equal(decideMeshed({ 'weft.dev/mesh': 'disabled' }, { 'weft.dev/mesh': 'enabled' }).meshed, false);
  t.equal(decideMeshed({ 'weft.dev/mesh': 'enabled' }, {}).meshed, true);
  t.equal(decideMeshed({ 'weft.dev/mesh': 'yes' }, {}).meshed, false, 'only "enabled" opts in');
});
