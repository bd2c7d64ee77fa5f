// Policy propagation: how long from `kubectl apply` of an AccessPolicy change until every node's
// agent holds (and therefore enforces) the new generation. DESIGN.md's target: p99 ≤ 1 s.
//
//   node bench/policy-propagation.ts [--changes 100] [--nodes 2] [--name NAME]
//
// Starts its own playground (or uses a running one with --name and --reuse), applies `changes`
// successive updates of one policy, and for each polls every agent's admin endpoint (inside its
// node) until the policy's generation there is the new one. Prints p50/p90/p99/max in ms. The
// clock starts when the update request is sent to the API server (a merge patch through
// @kubernetes/client-node, not kubectl: kubectl's own start-up and discovery take 130-1000 ms on
// this machine and would swamp the figure), so it includes the API server write, the watch, the
// controller's compile and debounce, the sync push and the agent's apply. Polling spawns a process
// per look (~10-20 ms), which bounds the resolution.
import { execFile } from 'node:child_process';
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Playground, uniqueName, type Result } from '../tests/helpers/playground.ts';

const { values } = parseArgs({
  options: { changes: { type: 'string', default: '100' }, nodes: { type: 'string', default: '2' }, name: { type: 'string' }, reuse: { type: 'boolean', default: false } },
});
const changes = Number(values.changes);
const pg = new Playground(values.name ?? uniqueName('pp'));

function run(cmd: string, args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function generationOn(node: string, key: string): Promise<number> {
  const r = await run('ip', ['netns', 'exec', `wpg-${pg.name}-${node}`, 'curl', '-s', 'http://127.0.0.1:15000/policies']);
  try {
    const dump = JSON.parse(r.stdout) as { access: { key: string; generation: number }[] };
    return dump.access.find((p) => p.key === key)?.generation ?? 0;
  } catch {
    return 0;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  if (!values.reuse) {
    const up = await pg.up(Number(values.nodes));
    if (up.code !== 0) throw new Error(`weft dev up failed: ${up.stderr}`);
  }
  try {
    const status = await pg.status();
    const kubectl = (args: string[], input?: string) => run(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], input);
    await kubectl(['create', 'namespace', 'bench-policy']);
    const nodes = status.nodes.map((n) => n.name);
    const kc = new KubeConfig();
    kc.loadFromFile(status.kubeconfig);
    const api = kc.makeApiClient(CustomObjectsApi);
    const ref = { group: 'weft.dev', version: 'v1alpha1', namespace: 'bench-policy', plural: 'accesspolicies' };
    const spec = (i: number) => ({ rules: [{ from: [{ namespaces: [`ns-${i}`] }] }] });
    // A rerun on the same playground (--reuse) starts from the object the last one left.
    await api.deleteNamespacedCustomObject({ ...ref, name: 'moving' }).catch(() => undefined);
    await api.createNamespacedCustomObject({ ...ref, body: { apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'moving', namespace: 'bench-policy' }, spec: spec(0) } });
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const latencies: number[] = [];
    for (let i = 1; i <= changes; i++) {
      const started = performance.now();
      const updated = (await api.patchNamespacedCustomObject({ ...ref, name: 'moving', body: { spec: spec(i) } }, mergePatch)) as { metadata: { generation: number } };
      const want = updated.metadata.generation;
      const pending = new Set(nodes);
      while (pending.size > 0) {
        const seen = await Promise.all([...pending].map(async (n) => [n, await generationOn(n, 'bench-policy/moving')] as const));
        for (const [n, g] of seen) if (g >= want) pending.delete(n);
        if (performance.now() - started > 30_000) throw new Error(`change ${i} did not reach ${[...pending].join(', ')} in 30 s`);
      }
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    const f = (x: number) => `${x.toFixed(0)} ms`;
    process.stdout.write(
      `policy propagation over ${changes} changes to ${nodes.length} nodes (apply → every agent holds it):\n` +
        `  p50 ${f(percentile(latencies, 50))}  p90 ${f(percentile(latencies, 90))}  p99 ${f(percentile(latencies, 99))}  max ${f(latencies[latencies.length - 1] ?? NaN)}\n` +
        `  (for comparison, \`kubectl apply\` alone takes ~${f(await kubectlApplyTime(kubectl))} here)\n`,
    );
  } finally {
    if (!values.reuse) await pg.down();
  }
}

/** What a user's `kubectl apply` of an unchanged object costs, to read the figures above against. */
async function kubectlApplyTime(kubectl: (args: string[], input?: string) => Promise<Result>): Promise<number> {
  const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'timing', namespace: 'bench-policy' }, data: { a: 'b' } });
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await kubectl(['apply', '-f', '-'], manifest);
  return (performance.now() - t0) / 5;
}

await main();
