import t from 'tap';
import { parseWeftCniSettings } from '../../api/cni.ts';
import { chainIntoConflist, ConflistError, conflistFromConf, isChained, unchainFromConflist, weftCniEntry } from './conflist.ts';

const entry = weftCniEntry(parseWeftCniSettings({ agentSocket: '/run/weft/cni.sock', logFile: '/var/log/weft/cni.log' }));

// Real-world shapes: pretty (2 spaces), tabs with CRLF, one line, odd spacing, duplicate-looking
// strings that contain brackets and escaped quotes.
const originals: Record<string, string> = {
  pretty: `{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "plugins": [
    {
      "type": "ptp",
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.244.1.0/24" }]] }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true }
    }
  ]
}
`,
  tabsCrlf: '{\r\n\t"cniVersion": "0.4.0",\r\n\t"name": "net",\r\n\t"plugins": [\r\n\t\t{\r\n\t\t\t"type": "bridge"\r\n\t\t}\r\n\t]\r\n}\r\n',
  oneLine: '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"ptp","note":"a ] and a \\" and a }"}]}',
  oddSpacing: '{ "plugins" :[ {"type":"ptp"} ,{"type":"tuning"}   ] , "name":"n","cniVersion":"1.0.0" }',
};

for (const [shape, original] of Object.entries(originals)) {
  t.test(`${shape}: chain appends weft-cni last; unchain gives back the original bytes`, async (t) => {
    const chained = chainIntoConflist(original, entry);
    t.ok(chained.changed);
    const doc = JSON.parse(chained.text) as { plugins: { type: string }[] };
    const before = JSON.parse(original) as { plugins: { type: string }[] };
    t.same(doc.plugins.slice(0, -1), before.plugins, 'existing plugins untouched');
    t.same(doc.plugins.at(-1), entry, 'weft-cni entry appended last');
    t.ok(isChained(chained.text));

    const again = chainIntoConflist(chained.text, entry);
    t.notOk(again.changed, 'chaining twice changes nothing');
    t.equal(again.text, chained.text);

    const restored = unchainFromConflist(chained.text);
    t.ok(restored.changed);
    t.equal(restored.text, original, 'byte-for-byte the file before chaining');
  });
}

t.test('the inserted entry follows the file layout', async (t) => {
  const text = chainIntoConflist(originals.pretty as string, entry).text;
  t.match(text, /\n {4}\{\n {6}"type": "weft-cni",\n/, 'indented like its siblings');
  t.notMatch(chainIntoConflist(originals.oneLine as string, entry).text, /\n/, 'a one-line file stays one line');
});

t.test('changed settings replace the entry; still exactly one, and unchain restores the original', async (t) => {
  const original = originals.pretty as string;
  const v1 = chainIntoConflist(original, entry).text;
  const entry2 = { ...entry, timeoutMs: 9000 };
  const v2 = chainIntoConflist(v1, entry2);
  t.ok(v2.changed);
  const plugins = (JSON.parse(v2.text) as { plugins: { type: string; timeoutMs?: number }[] }).plugins;
  t.equal(plugins.filter((p) => p.type === 'weft-cni').length, 1);
  t.equal(plugins.at(-1)?.timeoutMs, 9000);
  t.equal(unchainFromConflist(v2.text).text, original);
});

t.test('an entry another tool re-serialized (other key order, other spacing) counts as in place', async (t) => {
  const reordered = Object.fromEntries(Object.entries(entry).reverse());
  const text = `{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"ptp"},${JSON.stringify(reordered, null, 8)}]}`;
  t.notOk(chainIntoConflist(text, entry).changed);
});

t.test('a plugin appended after ours by someone else survives unchain', async (t) => {
  const chained = chainIntoConflist(originals.oneLine as string, entry).text;
  const withBandwidth = chained.replace(/\]\}$/, ',{"type":"bandwidth"}]}');
  const out = unchainFromConflist(withBandwidth).text;
  t.same(
    (JSON.parse(out) as { plugins: { type: string }[] }).plugins.map((p) => p.type),
    ['ptp', 'bandwidth'],
  );
  t.equal(out, (originals.oneLine as string).replace(/\]\}$/, ',{"type":"bandwidth"}]}'));
});

t.test('a weft-cni entry first in the list is removed cleanly', async (t) => {
  const text = `{"plugins": [${JSON.stringify(entry)}, {"type":"ptp"}], "name":"n", "cniVersion":"1.0.0"}`;
  t.equal(unchainFromConflist(text).text, '{"plugins": [{"type":"ptp"}], "name":"n", "cniVersion":"1.0.0"}');
});

t.test('a single .conf becomes a conflist: the conf first, then weft-cni', async (t) => {
  const conf = '{"cniVersion":"0.4.0","name":"flannel","type":"flannel","delegate":{"isDefaultGateway":true}}';
  const out = JSON.parse(conflistFromConf(conf, entry)) as { cniVersion: string; name: string; plugins: unknown[] };
  t.equal(out.cniVersion, '0.4.0');
  t.equal(out.name, 'flannel');
  t.same(out.plugins, [JSON.parse(conf), entry]);
});

t.test('what is not a conflist is refused with a code', async (t) => {
  t.throws(() => chainIntoConflist('{"type":"ptp"}', entry), { code: 'CONF_NOT_A_LIST' });
  t.throws(() => chainIntoConflist('{not json', entry), { code: 'CONF_NOT_JSON' });
  t.throws(() => chainIntoConflist('{"plugins":[]}', entry), ConflistError);
  t.notOk(isChained('{not json'));
});
