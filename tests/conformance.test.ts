// End to end: the upstream Gateway API conformance suite, Mesh profiles (MESH-HTTP, then MESH-GRPC), unmodified —
// its own TestConformance compiled from sigs.k8s.io/gateway-api/conformance v1.6.3 (pinned in
// tests/gateway-api/go.mod) — against a real-node playground with Weft installed by its chart
// (gatewayAPI.installCRDs=true). The suite deploys its echo Deployments into namespaces it labels
// for Weft's mesh, execs Istio's echo client inside those pods through the API server, and checks
// what the echo server saw. The echo image is built from tests/gateway-api/echo and loaded on
// every node under the suite's own image name (tests/helpers/gateway-conformance.ts).
//
// Fails if any core mesh test or any test of a feature Weft claims fails. With
// WEFT_CONFORMANCE_REPORT=<path> (MESH-HTTP) and WEFT_CONFORMANCE_GRPC_REPORT=<path> (MESH-GRPC)
// it also writes the suite's ConformanceReports there (docs/conformance/ holds the committed ones).
import t from 'tap';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { conformanceBinary, echoAdvancedImage } from './helpers/gateway-conformance.ts';
import { Playground, REPO, sh, uniqueName, type DevStatusJson } from './helpers/playground.ts';

// Building the suite (~4 min) and the echo programs (~2 min) happens once per machine; a warm
// run is the playground's start plus ~1 min of suite.
t.setTimeout(1_500_000);

const pg = new Playground(uniqueName('gwc'), { runtime: 'real' });
t.teardown(async () => {
  await pg.down();
});

/** The profile's core tests (features Mesh and HTTPRoute only): all must pass. */
const CORE = ['MeshBasic', 'MeshHTTPRouteMatching', 'MeshHTTPRouteRedirectHostAndStatus', 'MeshHTTPRouteRequestHeaderModifier', 'MeshHTTPRouteSimpleSameNamespace', 'MeshHTTPRouteWeight', 'MeshTrafficSplit'];

/** The extended features Weft claims (docs/routing.md), and the suite's tests that need them. */
const FEATURES = [
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteNamedRouteRule',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteParentRefPort',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
];
const EXTENDED = [
  'MeshConsumerRoute',
  'MeshFrontend',
  'MeshFrontendHostname',
  'MeshPorts',
  'MeshHTTPRoute303Redirect',
  'MeshHTTPRoute307Redirect',
  'MeshHTTPRoute308Redirect',
  'MeshHTTPRouteBackendRequestHeaderModifier',
  'MeshHTTPRouteNamedRule',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
];

let status: DevStatusJson;
let suite = '';
const timings: Record<string, number> = {};

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    timings[what] = Math.round((Date.now() - t0) / 100) / 10;
  }
}

t.before(async () => {
  suite = await timed('suite build', conformanceBinary);
  const image = await timed('echo image build', () => echoAdvancedImage());
  const r = await timed('playground up', () => pg.up(2, ['--image', image.tarball]));
  if (r.code !== 0) throw new Error(`weft dev up failed: ${r.stderr}`);
  // The user's path to the route CRDs: the chart's pinned copy (standard channel).
  const h = await timed('helm upgrade', () => pg.helm(['upgrade', 'weft', join(REPO, 'helm/weft'), '-n', 'weft-system', '--reuse-values', '--set', 'gatewayAPI.installCRDs=true', '--wait', '--timeout', '180s'], 240_000));
  if (h.code !== 0) throw new Error(`helm upgrade --set gatewayAPI.installCRDs=true failed: ${h.stderr}`);
  status = await pg.status();
});

interface SuiteRun {
  code: number | null;
  log: string;
  results: Map<string, string>;
  report: string;
}

/** MESH-GRPC: its core tests (features Mesh and GRPCRoute only), and the mesh features claimed for it. */
const GRPC_CORE = ['MeshBasic', 'MeshGRPCRouteWeight'];
const GRPC_FEATURES = ['Mesh', 'GRPCRoute', ...FEATURES.filter((f) => f.startsWith('Mesh'))];

async function runSuite(dir: string, version: string, profile = 'MESH-HTTP', features = ['Mesh', 'HTTPRoute', ...FEATURES]): Promise<SuiteRun> {
  const reportPath = join(dir, 'report.yaml');
  const args = [
    '-test.run',
    '^TestConformance$',
    '-test.v',
    '-test.timeout',
    '20m',
    `-conformance-profiles=${profile}`,
    `-supported-features=${features.join(',')}`,
    // Weft meshes the namespaces that opt in; the suite creates its own.
    '-namespace-labels=weft.dev/mesh=enabled',
    `-report-output=${reportPath}`,
    '-organization=weft',
    '-project=weft',
    '-url=https://weft.dev',
    `-version=${version}`,
    '-contact=https://weft.dev',
  ];
  const child = spawn(suite, args, { cwd: dir, env: { ...process.env, KUBECONFIG: status.kubeconfig }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  await writeFile(join(dir, 'suite.log'), log);
  const results = new Map<string, string>();
  for (const m of log.matchAll(/^ {4}--- (PASS|FAIL|SKIP): TestConformance\/(\w+) /gm)) results.set(m[2] as string, m[1] as string);
  const report = await readFile(reportPath, 'utf8').catch(() => '');
  return { code, log, results, report };
}

/** The suite's log lines for one test, for a failure message. */
function excerpt(log: string, test: string): string {
  const lines = log.split('\n').filter((l) => l.includes(`TestConformance/${test}`) || /Error|expected|wanted|failed/.test(l));
  return lines.slice(-15).join('\n');
}

t.test('the upstream Gateway API conformance suite, Mesh profile: every core test and every claimed feature passes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-conformance-'));
  // A failed run keeps the suite's full log (the echo client's own errors are in it) for a look.
  t.teardown(async () => {
    if (t.passing()) await rm(dir, { recursive: true, force: true });
    else t.comment(`the suite's log: ${join(dir, 'suite.log')}`);
  });
  const chart = await readFile(join(REPO, 'helm/weft/Chart.yaml'), 'utf8');
  const version = /^appVersion:\s*"?([^"\s]+)"?/m.exec(chart)?.[1] ?? 'unknown';
  const run = await timed('suite run', () => runSuite(dir, version));
  for (const name of CORE) t.equal(run.results.get(name), 'PASS', `core: ${name}${run.results.get(name) === 'PASS' ? '' : `\n${excerpt(run.log, name)}`}`);
  for (const name of EXTENDED) t.equal(run.results.get(name), 'PASS', `extended: ${name}${run.results.get(name) === 'PASS' ? '' : `\n${excerpt(run.log, name)}`}`);
  const failed = [...run.results].filter(([, r]) => r === 'FAIL').map(([n]) => n);
  t.same(failed, [], 'no test of the suite failed');
  t.equal(run.code, 0, `the suite exited 0${run.code === 0 ? '' : `:\n${run.log.slice(-3000)}`}`);
  t.match(run.report, /name: MESH-HTTP/, 'the ConformanceReport covers the MESH-HTTP profile');
  t.match(run.report, /core:\s+result: success/, 'and says core succeeded');
  t.match(run.report, /summary: Core tests succeeded\. Extended tests succeeded\./);
  if (process.env.WEFT_CONFORMANCE_REPORT && run.report) await copyFile(join(dir, 'report.yaml'), process.env.WEFT_CONFORMANCE_REPORT);
  t.comment(`timings (s): ${JSON.stringify(timings)}; ${run.results.size} tests ran, ${[...run.results.values()].filter((r) => r === 'PASS').length} passed`);
});

t.test('the same suite, Mesh profile MESH-GRPC: GRPCRoute on the h2c routed path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-conformance-grpc-'));
  t.teardown(async () => {
    if (t.passing()) await rm(dir, { recursive: true, force: true });
    else t.comment(`the suite's log: ${join(dir, 'suite.log')}`);
  });
  const chart = await readFile(join(REPO, 'helm/weft/Chart.yaml'), 'utf8');
  const version = /^appVersion:\s*"?([^"\s]+)"?/m.exec(chart)?.[1] ?? 'unknown';
  // The first run deletes its namespaces as it ends; a second run cannot create in one still terminating.
  await timed('namespaces gone', async () => {
    const until = Date.now() + 180_000;
    for (;;) {
      const r = await sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, 'get', 'namespaces', '-o', 'name']);
      if (r.code === 0 && !/namespace\/gateway-conformance/.test(r.stdout)) return;
      if (Date.now() > until) throw new Error(`the first run's namespaces are still there: ${r.stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  });
  const run = await timed('grpc suite run', () => runSuite(dir, version, 'MESH-GRPC', GRPC_FEATURES));
  for (const name of GRPC_CORE) t.equal(run.results.get(name), 'PASS', `core: ${name}${run.results.get(name) === 'PASS' ? '' : `\n${excerpt(run.log, name)}`}`);
  const failed = [...run.results].filter(([, r]) => r === 'FAIL').map(([n]) => n);
  t.same(failed, [], 'no test of the suite failed');
  t.equal(run.code, 0, `the suite exited 0${run.code === 0 ? '' : `:\n${run.log.slice(-3000)}`}`);
  t.match(run.report, /name: MESH-GRPC/, 'the ConformanceReport covers the MESH-GRPC profile');
  t.match(run.report, /core:\s+result: success/, 'and says core succeeded');
  if (process.env.WEFT_CONFORMANCE_GRPC_REPORT && run.report) await copyFile(join(dir, 'report.yaml'), process.env.WEFT_CONFORMANCE_GRPC_REPORT);
  const ran = [...run.results].filter(([, r]) => r !== 'SKIP');
  t.comment(`timings (s): ${JSON.stringify(timings)}; ${JSON.stringify(Object.fromEntries(ran))}, ${run.results.size - ran.length} skipped`);
});
