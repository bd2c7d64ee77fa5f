// Installs Weft on the playground the way a user installs it on a cluster: the mesh root as a
// Secret, then `helm install` of the chart (helm/weft) with playground/values.yaml. The chart's
// controller and agents then run as local processes (chart-runner.ts), from the chart's own pod
// templates and with the chart's own ServiceAccounts, RBAC and tokens from the TokenRequest API:
// a permission the chart forgets fails here first. `helm upgrade` rolls them, `helm uninstall`
// stops them, `helm test` runs the chart's test pods on the simulated kubelet.
//
// An agent can also be replaced in place by hand: `weft dev restart-agent <node>` asks the
// playground's supervisor, through its mesh control socket, to start a new agent process on the
// node, wait until that process is ready, then send SIGTERM to the old one, which drains.
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import type { PlaygroundPlan } from './config.ts';
import { run } from './exec.ts';
import { waitFor } from './controlplane.ts';
import { readState } from './state.ts';
import type { Supervisor } from './supervisor.ts';
import { ChartRunner, type AgentRestart } from './chart-runner.ts';
import { createRoot } from '../controller/ca/root.ts';
import { buildAgent } from '../scripts/build-agent.ts';
import { BUSYBOX_IMAGE } from './images.ts';

export type { AgentRestart } from './chart-runner.ts';

export const INSTALL_NAMESPACE = 'weft-system';
export const RELEASE = 'weft';

export interface MeshPaths {
  caCert: string;
  caKey: string;
}

/** What `helm` needs against the playground's API server: its kubeconfig, and config and cache under the playground's directory. */
export function helmEnv(p: PlaygroundPlan): Record<string, string> {
  return {
    KUBECONFIG: p.paths.adminKubeconfig,
    HELM_CACHE_HOME: join(p.dir, 'helm/cache'),
    HELM_CONFIG_HOME: join(p.dir, 'helm/config'),
    HELM_DATA_HOME: join(p.dir, 'helm/data'),
  };
}

function helm(p: PlaygroundPlan): (args: string[]) => Promise<string> {
  return (args) => run(join(p.binDir, 'helm'), args, { env: { ...process.env, ...helmEnv(p) }, timeoutMs: 120_000 });
}

function kubectl(p: PlaygroundPlan): (args: string[], input?: string) => Promise<string> {
  return (args, input) => run(join(p.binDir, 'kubectl'), [`--kubeconfig=${p.paths.adminKubeconfig}`, ...args], input !== undefined ? { input } : {});
}

/** The `helm install` arguments of the playground (tests/lifecycle.test.ts installs again with the same). */
function installArgs(p: PlaygroundPlan, repo: string, paths: MeshPaths, opts: { mtlsMode?: 'STRICT' | 'PERMISSIVE' } = {}): string[] {
  return [
    RELEASE,
    join(repo, 'helm/weft'),
    '--namespace',
    INSTALL_NAMESPACE,
    '--values',
    join(repo, 'playground/values.yaml'),
    '--set-file',
    `ca.trustBundle=${paths.caCert}`,
    '--set',
    `mtlsMode=${opts.mtlsMode ?? 'PERMISSIVE'}`,
    // The CNI plugin's fallback when the agent cannot answer: the playground's API server.
    '--set',
    `agent.cni.kubeAPI=https://${p.hostIP}:${p.apiServerPort}`,
  ];
}

/** The chart's image names for this checkout: `<image.registry>/weft-<component>:<appVersion>`. */
export async function weftImageRefs(repo: string): Promise<{ agent: string; controller: string }> {
  const chart = await readFile(join(repo, 'helm/weft/Chart.yaml'), 'utf8');
  const version = /^appVersion:\s*"?([^"\s]+)"?/m.exec(chart)?.[1];
  if (!version) throw new Error('helm/weft/Chart.yaml has no appVersion');
  return { agent: `weft/weft-agent:${version}`, controller: `weft/weft-controller:${version}` };
}

/** The mesh root, made and stored as docs/install.md tells users to: the Secret the chart names. */
async function storeMeshRoot(p: PlaygroundPlan): Promise<MeshPaths> {
  const root = await createRoot({ trustDomain: 'cluster.local' });
  const paths: MeshPaths = { caCert: join(p.paths.pki, 'mesh-ca.crt'), caKey: join(p.paths.pki, 'mesh-ca.key') };
  await writeFile(paths.caCert, root.certificatePem, { mode: 0o644 });
  await writeFile(paths.caKey, root.keyPem, { mode: 0o600 });
  await kubectl(p)(['create', 'namespace', INSTALL_NAMESPACE]);
  await kubectl(p)(['create', 'secret', 'tls', 'weft-ca', '-n', INSTALL_NAMESPACE, `--cert=${paths.caCert}`, `--key=${paths.caKey}`]);
  return paths;
}

/**
 * Installs Weft on real nodes exactly as on a cluster: the mesh root as a Secret, then `helm
 * install` with the chart's defaults. The chart's DaemonSet and Deployment run as pods from the
 * images the nodes imported (images/*.Dockerfile, built by playground/weft-images.ts); the only
 * value set is the pull policy, since there is no registry to pull from.
 */
export async function installMeshOnRealNodes(p: PlaygroundPlan, repo: string, opts: { mtlsMode?: 'STRICT' | 'PERMISSIVE'; log?: (msg: string) => void } = {}): Promise<MeshPaths> {
  const paths = await storeMeshRoot(p);
  const args = installArgs(p, repo, paths, opts);
  const values = args.indexOf('--values');
  // `helm test` runs the chart's test pods from the local busybox image (with the same programs).
  args.splice(values, 2, '--set', 'image.pullPolicy=Never', '--set', `helmTest.image=${BUSYBOX_IMAGE}`);
  await helm(p)(['install', ...args, '--wait', '--timeout', '180s']);
  return paths;
}

export interface MeshInstall {
  paths: MeshPaths;
  runner: ChartRunner;
}

export async function installMesh(p: PlaygroundPlan, sup: Supervisor, repo: string, opts: { mtlsMode?: 'STRICT' | 'PERMISSIVE'; log?: (msg: string) => void; onRunner?: (r: ChartRunner) => void } = {}): Promise<MeshInstall> {
  const paths = await storeMeshRoot(p);
  await helm(p)(['install', ...installArgs(p, repo, paths, opts)]);

  const runner = new ChartRunner({
    plan: p,
    sup,
    namespace: INSTALL_NAMESPACE,
    // Agents run from their bundle, as the image ships them (see scripts/build-agent.ts).
    agentEntry: await buildAgent(),
    controllerEntry: join(repo, 'controller/main.ts'),
    cniBinary: join(repo, 'dist/weft-cni'),
    log: opts.log ?? ((m) => process.stderr.write(`[weft dev] ${m}\n`)),
  });
  runner.start();
  opts.onRunner?.(runner);

  await waitFor('the Weft controller', 60_000, async () => (await fetch(`http://${p.hostIP}:15014/readyz`)).ok || 'not ready');
  await waitFor('Weft agents ready on every node', 60_000, async () => {
    const states = await Promise.all(p.nodes.map((n) => fetch(`http://${n.ip}:15021/healthz/ready`).then((r) => r.ok, () => false)));
    return states.every(Boolean) || `${states.filter(Boolean).length}/${p.nodes.length} ready`;
  });
  await serveMeshControl(p, runner);
  return { paths, runner };
}

/** The supervisor's mesh control socket (HTTP): `POST /agents/<node>/restart`. */
export function meshControlSocket(p: PlaygroundPlan): string {
  return join(p.dir, 'mesh.sock');
}

async function serveMeshControl(p: PlaygroundPlan, runner: ChartRunner): Promise<void> {
  const path = meshControlSocket(p);
  const server = createServer((req, res) => {
    const m = /^\/agents\/([^/]+)\/restart$/.exec(req.url ?? '');
    const reply = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method !== 'POST' || !m?.[1]) return reply(404, { error: { code: 'NOT_FOUND', message: 'POST /agents/<node>/restart' } });
    runner.restartAgent(decodeURIComponent(m[1])).then(
      (r) => reply(200, r),
      (e: unknown) => {
        const code = (e as { code?: unknown }).code;
        reply(code === 'NO_SUCH_PROCESS' ? 404 : code === 'REPLACE_IN_PROGRESS' ? 409 : 500, { error: { code: typeof code === 'string' ? code : 'FAILED', message: (e as Error).message } });
      },
    );
  });
  await unlink(path).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
}

function isRestart(v: unknown): v is AgentRestart {
  const r = v as Partial<AgentRestart> | null;
  return typeof r === 'object' && r !== null && typeof r.node === 'string' && typeof r.oldPid === 'number' && typeof r.newPid === 'number' && typeof r.readyMs === 'number';
}

/** `weft dev restart-agent`: asks the running playground `name` to upgrade the agent of `node`. */
export async function restartAgent(name: string, node: string): Promise<AgentRestart> {
  const state = await readState(name);
  if (!state) throw Object.assign(new Error(`no playground named "${name}" is running`), { code: 'NO_PLAYGROUND' });
  if (!state.mesh) throw Object.assign(new Error(`playground "${name}" runs without Weft (--no-mesh)`), { code: 'NO_MESH' });
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: meshControlSocket(state.plan), method: 'POST', path: `/agents/${encodeURIComponent(node)}/restart` }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return reject(Object.assign(new Error(`the playground answered ${res.statusCode} without JSON`), { code: 'BAD_ANSWER' }));
        }
        if (res.statusCode === 200 && isRestart(body)) return resolve(body);
        const { code, message } = (body as { error?: { code?: string; message?: string } }).error ?? {};
        reject(Object.assign(new Error(message ?? `status ${res.statusCode}`), { code: code ?? 'FAILED' }));
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`the playground's mesh control socket: ${e.code ?? e.message}`), { code: 'NO_CONTROL_SOCKET' })));
    req.end();
  });
}
