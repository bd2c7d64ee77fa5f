// Bulk traffic both ways at once through the agent's HTTP/2 proxies must not stall: the routed
// path (h2.ts) and the L7 policy path (agent/l7/http2.ts). Node's HTTP/2 session stops reading its
// socket while a write of its own is in progress, so two sessions that both have more in flight
// to each other than the kernel buffers between them hold each wait for the other to read, for
// good: the HBONE tunnel stalled so with 16 MiB windows (agent/hbone/settings.ts). Each proxy has
// two such links per stream (client to agent, agent to backend); what a peer may have in flight
// to the agent is the agent's session window. Its peers here advertise large windows, as gRPC
// implementations that size them to the bandwidth-delay product do. With 8 MiB agent windows the
// loads below stalled in 7 of 7 runs on the routed path and 8 of 9 on the L7 path; with 4 MiB none
// of 20 did. Every stream's bytes are echoed by the backend as they arrive and compared with what
// was sent. H2_DUPLEX_PATH, _LOADS (streams x bytes, ...), _PEER_* and _STALLED_MS vary the run.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import t, { type Test } from 'tap';
import type { Service } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { startFront } from '../l7/test-fixtures.ts';
import { StateStore } from '../state/store.ts';
import { h2Backend, h2Front, routeClient } from './test-fixtures.ts';

/**
 * A load is stalled when no byte came back for this long (a stall is for good: nothing moves
 * again), or when it is still not done after LIMIT_MS; each load takes under 3 s when nothing
 * stalls, so a slow machine does not pass for a stall.
 */
const STALLED_MS = Number(process.env.H2_DUPLEX_STALLED_MS ?? 8_000);
const LIMIT_MS = 90_000;
/** The peers' windows: a stream's, and the session's. */
const PEER_STREAM_WINDOW = Number(process.env.H2_DUPLEX_PEER_STREAM_WINDOW ?? 16 * 1024 * 1024);
const PEER_SESSION_WINDOW = Number(process.env.H2_DUPLEX_PEER_SESSION_WINDOW ?? 64 * 1024 * 1024);
const PEER_SETTINGS: http2.Settings = { initialWindowSize: PEER_STREAM_WINDOW, maxConcurrentStreams: 1000 };
/** MiB; Node's default of 10 refuses streams (ENHANCE_YOUR_CALM) once a client has queued that much to send. */
const PEER_MEMORY = 256;

function echoBackend(t: Test): Promise<number> {
  return h2Backend(
    t,
    (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
      stream.pipe(stream);
    },
    { options: { settings: PEER_SETTINGS, maxSessionMemory: PEER_MEMORY }, sessionWindow: PEER_SESSION_WINDOW },
  );
}

function routed(backendPort: number): { store: StateStore; web: Service } {
  const service = (name: string, port: number): Service => ({
    key: `a/${name}`,
    namespace: 'a',
    name,
    clusterIPs: ['10.96.0.20'],
    ports: [{ name: 'grpc', port: 7070, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' }],
    endpoints: [{ ip: '127.0.0.1', ports: { grpc: port }, ready: true }],
  });
  const web = service('web', 1);
  const route: CompiledRoute = {
    key: 'HTTPRoute/a/bulk',
    kind: 'HTTPRoute',
    namespace: 'a',
    name: 'bulk',
    generation: 1,
    created: '2026-01-01T00:00:00Z',
    parents: [{ service: 'a/web' }],
    rules: [{ name: '0', matches: [], filters: [], backends: [{ service: 'a/echo', port: 7070, weight: 1, filters: [] }] }],
  };
  const store = new StateStore();
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: web }, { kind: 'Service', value: service('echo', backendPort) }, { kind: 'Route', value: route }] });
  return { store, web };
}

/**
 * One stream: `times` copies of `block` queued at once (the same buffer each time, so a load of
 * several hundred MB holds a few MB), its echo compared as it comes.
 */
function echoed(client: http2.ClientHttp2Session, block: Buffer, times: number, progress: { bytes: number }): Promise<{ same: boolean; length: number }> {
  return new Promise((resolve) => {
    const s = client.request({ ':method': 'POST', ':path': '/bulk', 'content-type': 'application/octet-stream' });
    let length = 0;
    let same = true;
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      for (let i = 0; i < c.length && same; ) {
        const at = (length + i) % block.length;
        const n = Math.min(c.length - i, block.length - at);
        same = c.subarray(i, i + n).equals(block.subarray(at, at + n));
        i += n;
      }
      length += c.length;
      progress.bytes += c.length;
    });
    s.once('close', () => resolve({ same, length }));
    for (let i = 0; i < times; i++) s.write(block);
    s.end();
  });
}

/** Bytes of a stream's repeated block. */
const BLOCK = 1_000_003;
const LOADS = (process.env.H2_DUPLEX_LOADS ?? '24x6000000,32x6000000').split(',').map((l) => l.split('x').map(Number) as [number, number]);

/** An h2c client with the peers' windows, to the routed path or to the L7 policy path, in front of an echo backend. */
const PATHS: Record<string, (t: Test, backendPort: number) => Promise<http2.ClientHttp2Session>> = {
  'the routed h2 path': (t, port) => {
    const { store, web } = routed(port);
    return h2Front(t, store, routeClient(), web, 7070, undefined, { settings: PEER_SETTINGS, window: PEER_SESSION_WINDOW, maxSessionMemory: PEER_MEMORY });
  },
  'the L7 policy path': async (t, port) => {
    const front = await startFront(t, port);
    const client = http2.connect(`http://127.0.0.1:${front.port}`, { settings: PEER_SETTINGS, maxSessionMemory: PEER_MEMORY });
    client.on('error', () => {});
    client.once('connect', () => client.setLocalWindowSize(PEER_SESSION_WINDOW));
    // A session stuck in a write does not end on the client's FIN: the front's sessions are closed too.
    t.teardown(() => {
      client.destroy();
      for (const s of front.sessions) s.close('test over');
    });
    await once(client, 'connect');
    return client;
  },
};

for (const [path, connect] of Object.entries(PATHS).filter(([p]) => p.includes(process.env.H2_DUPLEX_PATH ?? ''))) {
  for (const [streams, bytes] of LOADS) {
    t.test(`${streams} streams of ${bytes / 1e6} MB echoed at once through ${path} complete`, async (t) => {
      const client = await connect(t, await echoBackend(t));
      const progress = { bytes: 0 };
      // A block of a different length per stream: bytes delivered to the wrong stream do not match.
      const blocks = Array.from({ length: streams }, (_, i) => randomBytes(BLOCK + i));
      const times = Math.ceil(bytes / BLOCK);
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      let seen = -1;
      let movedAt = started;
      const stalled = new Promise<'stalled'>((resolve) => {
        timer = setInterval(() => {
          const now = performance.now();
          if (progress.bytes !== seen) [seen, movedAt] = [progress.bytes, now];
          if (now - movedAt > STALLED_MS || now - started > LIMIT_MS) resolve('stalled');
        }, 250);
      });
      const r = await Promise.race([Promise.all(blocks.map((b) => echoed(client, b, times, progress))), stalled]);
      clearInterval(timer);
      if (r === 'stalled') return void t.fail(`stalled: ${progress.bytes} of ${streams * times * BLOCK} bytes back after ${((performance.now() - started) / 1000).toFixed(1)} s, none in the last ${((performance.now() - movedAt) / 1000).toFixed(1)} s`);
      t.pass(`done in ${((performance.now() - started) / 1000).toFixed(2)} s`);
      t.same(
        r.map((x) => x.length),
        blocks.map((b) => b.length * times),
        'every byte came back',
      );
      t.ok(
        r.every((x) => x.same),
        'and the same bytes, on the same stream',
      );
    });
  }
}
