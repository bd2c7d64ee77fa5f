// How the DaemonSet watch reads what the API server sends: lines cut anywhere in a stream, the
// few fields it needs from list answers and watch events, and refusals of anything else (the
// watch logs them and starts over; tests/uninstall.test.ts proves that against a real API server).
import t from 'tap';
import { Backoff } from './backoff.ts';
import { KubeApiError } from './errors.ts';
import { inClusterServer } from './access.ts';
import { LineSplitter } from './json-lines.ts';
import { parseList, parseWatchEvent } from './watch-event.ts';

const ds = (meta: Record<string, unknown>) => ({ kind: 'DaemonSet', apiVersion: 'apps/v1', metadata: { name: 'weft-agent', uid: 'u-1', resourceVersion: '42', ...meta }, spec: {} });

t.test('LineSplitter: whole lines out of chunks cut anywhere, UTF-8 included', async (t) => {
  const events = [JSON.stringify({ type: 'ADDED', object: ds({ annotations: { note: 'ünïcødé ✓' } }) }), JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '43' } } })];
  const bytes = Buffer.from(`${events.join('\n')}\n`);
  // Every cut point, including inside the multi-byte characters.
  for (let cut = 1; cut < bytes.length; cut++) {
    const s = new LineSplitter();
    const lines = [...s.push(bytes.subarray(0, cut)), ...s.push(bytes.subarray(cut))];
    if (lines.join('\n') !== events.join('\n') || s.end() !== '') return t.fail(`cut at byte ${cut} changed the lines`);
  }
  t.pass(`${bytes.length - 1} cut points give back the same two lines`);
  const s = new LineSplitter();
  t.same(s.push(Buffer.from('{"a":1}\n{"b"')), ['{"a":1}']);
  t.equal(s.end(), '{"b"', 'end() returns a line the stream did not finish');
});

t.test('LineSplitter: a line past the limit is an error, not unbounded memory', async (t) => {
  const s = new LineSplitter(1024);
  s.push(Buffer.alloc(1000, 'x'));
  t.throws(() => s.push(Buffer.alloc(100, 'x')), { code: 'KUBE_DECODE' });
});

t.test('parseWatchEvent: the events a watch delivers', async (t) => {
  t.same(parseWatchEvent(JSON.stringify({ type: 'ADDED', object: ds({}) })), {
    type: 'ADDED',
    object: { name: 'weft-agent', uid: 'u-1', resourceVersion: '42', deletionTimestamp: undefined },
  });
  const deleting = parseWatchEvent(JSON.stringify({ type: 'MODIFIED', object: ds({ deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: ['foregroundDeletion'] }) }));
  t.match(deleting, { type: 'MODIFIED', object: { deletionTimestamp: '2026-01-01T00:00:00Z' } });
  t.match(parseWatchEvent(JSON.stringify({ type: 'DELETED', object: ds({}) })), { type: 'DELETED', object: { uid: 'u-1' } });
  t.same(parseWatchEvent(JSON.stringify({ type: 'BOOKMARK', object: { kind: 'DaemonSet', metadata: { resourceVersion: '99' } } })), { type: 'BOOKMARK', resourceVersion: '99' });
  const gone = { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'too old resource version: 1 (200)', reason: 'Expired', code: 410 };
  t.same(parseWatchEvent(JSON.stringify({ type: 'ERROR', object: gone })), { type: 'ERROR', status: { code: 410, reason: 'Expired', message: 'too old resource version: 1 (200)' } });
});

t.test('parseWatchEvent: refuses what is not a watch event, with KUBE_DECODE', async (t) => {
  for (const [line, why] of [
    ['{"type":"ADDED","object":', 'truncated JSON'],
    ['<html>bad gateway</html>', 'not JSON'],
    ['[1,2]', 'not an object'],
    ['{"type":"RENAMED","object":{}}', 'an unknown type'],
    [JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'weft-agent', resourceVersion: '1' } } }), 'no uid'],
    [JSON.stringify({ type: 'MODIFIED', object: { metadata: { name: 'weft-agent', uid: 'u' } } }), 'no resourceVersion'],
    [JSON.stringify({ type: 'DELETED', object: ds({ deletionTimestamp: 7 }) }), 'a deletionTimestamp that is not a string'],
    [JSON.stringify({ type: 'BOOKMARK', object: {} }), 'a bookmark without a resourceVersion'],
  ] as const) {
    t.throws(() => parseWatchEvent(line), { code: 'KUBE_DECODE' }, why);
  }
  const e = (() => {
    try {
      parseWatchEvent(`{"type":"ADDED","object":${'x'.repeat(100_000)}`);
    } catch (err) {
      return err as KubeApiError;
    }
  })();
  t.ok(e instanceof KubeApiError && e.message.length < 200, 'the message (it is logged) quotes at most the start of the line');
});

t.test('parseList: resourceVersion and items; an empty list may say items: null', async (t) => {
  t.same(parseList({ kind: 'DaemonSetList', metadata: { resourceVersion: '7' }, items: [ds({})] }), {
    resourceVersion: '7',
    items: [{ name: 'weft-agent', uid: 'u-1', resourceVersion: '42', deletionTimestamp: undefined }],
  });
  t.same(parseList({ kind: 'DaemonSetList', metadata: { resourceVersion: '8' }, items: null }), { resourceVersion: '8', items: [] });
  t.throws(() => parseList({ kind: 'DaemonSetList', metadata: {}, items: [] }), { code: 'KUBE_DECODE' }, 'no resourceVersion to watch from');
  t.throws(() => parseList({ kind: 'Status', metadata: { resourceVersion: '1' }, items: 'x' }), { code: 'KUBE_DECODE' });
});

t.test('inClusterServer: the kubelet variables, IPv6 bracketed', async (t) => {
  t.equal(inClusterServer({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }), 'https://10.96.0.1:443');
  t.equal(inClusterServer({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '6443' }), 'https://[fd00:10:96::1]:6443');
  t.equal(new URL(inClusterServer({ KUBERNETES_SERVICE_HOST: 'fd00::1' }) ?? '').hostname, '[fd00::1]', 'a valid URL; port 443 by default');
  t.equal(inClusterServer({}), null, 'not in a cluster');
  t.equal(inClusterServer({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: 'https' }), null, 'a port that is not a number');
});

t.test('Backoff: doubles up to the cap, with jitter, and starts over after reset()', async (t) => {
  const b = new Backoff({ firstMs: 100, maxMs: 1000 });
  const delays = Array.from({ length: 8 }, () => b.next());
  const bases = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
  t.ok(delays.every((d, i) => d >= (bases[i] as number) * 0.75 && d <= (bases[i] as number) * 1.25), `within ±25 % of ${bases.join(', ')}: ${delays.join(', ')}`);
  b.reset();
  t.ok(b.next() <= 125, 'back to the first delay');
});
