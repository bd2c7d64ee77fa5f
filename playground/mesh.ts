// Runs Weft on the playground: the controller in the root namespace (where a control-plane node
// would run it) and one agent per node, inside the node's namespace, each with the chart's
// ServiceAccount and RBAC and a token from the TokenRequest API — the agents' tokens bound to
// their Node, so the controller learns which node an agent speaks for.
//
// An agent can be upgraded in place the way the chart's DaemonSet does it (maxSurge 1,
// maxUnavailable 0): `weft dev restart-agent <node>` asks the playground's supervisor, through
// its mesh control socket, to start a new agent process on the node, wait until that process is
// ready, then send SIGTERM to the old one, which drains.
import { unlink, mkdir, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import type { NodePlan, PlaygroundPlan } from './config.ts';
import { run } from './exec.ts';
import { waitFor } from './controlplane.ts';
import { readState } from './state.ts';
import { SupervisorError, type Replacement, type Supervisor } from './supervisor.ts';
import { createRoot } from '../controller/ca/root.ts';
import { AGENT_SOCKET, queryAgent } from '../agent/handover.ts';
import { buildAgent } from '../scripts/build-agent.ts';

export const INSTALL_NAMESPACE = 'weft-system';

/**
 * The ServiceAccounts and RBAC rendered from the Helm chart itself, so that the playground's
 * controller and agents run with exactly the permissions a real install grants: a missing rule
 * fails here first.
 */
async function chartRbac(p: PlaygroundPlan, repo: string): Promise<string> {
  const only = ['serviceaccounts.yaml', 'controller-rbac.yaml', 'agent-rbac.yaml'].flatMap((f) => ['--show-only', `templates/${f}`]);
  return run(join(p.binDir, 'helm'), ['template', 'weft', join(repo, 'helm/weft'), '--namespace', INSTALL_NAMESPACE, ...only]);
}

export interface MeshPaths {
  caCert: string;
  caKey: string;
  controllerKubeconfig: string;
}

function kubectl(p: PlaygroundPlan): (args: string[], input?: string) => Promise<string> {
  return (args, input) => run(join(p.binDir, 'kubectl'), [`--kubeconfig=${p.paths.adminKubeconfig}`, ...args], input !== undefined ? { input } : {});
}

async function token(p: PlaygroundPlan, sa: string, bindNode?: string): Promise<string> {
  const args = ['create', 'token', sa, '-n', INSTALL_NAMESPACE, '--duration=48h'];
  if (bindNode) args.push('--bound-object-kind=Node', `--bound-object-name=${bindNode}`);
  return (await kubectl(p)(args)).trim();
}

export async function installMesh(p: PlaygroundPlan, sup: Supervisor, repo: string, opts: { mtlsMode?: 'STRICT' | 'PERMISSIVE' } = {}): Promise<MeshPaths> {
  await kubectl(p)(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: INSTALL_NAMESPACE } }));
  // The chart's CRDs (helm/weft/crds, generated from api/policy/schema.ts), as `helm install` does first.
  await kubectl(p)(['apply', '--server-side', '-f', join(repo, 'helm/weft/crds')]);
  await kubectl(p)(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(repo, 'helm/weft/crds')]);
  await kubectl(p)(['apply', '-f', '-'], await chartRbac(p, repo));
  const root = await createRoot({ trustDomain: 'cluster.local' });
  const paths: MeshPaths = {
    caCert: join(p.paths.pki, 'mesh-ca.crt'),
    caKey: join(p.paths.pki, 'mesh-ca.key'),
    controllerKubeconfig: join(p.paths.pki, 'weft-controller.kubeconfig'),
  };
  await writeFile(paths.caCert, root.certificatePem, { mode: 0o644 });
  await writeFile(paths.caKey, root.keyPem, { mode: 0o600 });

  const clusterCa = await run('cat', [join(p.paths.pki, 'ca.crt')]);
  const kc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'playground', cluster: { server: `https://${p.hostIP}:${p.apiServerPort}`, 'certificate-authority-data': Buffer.from(clusterCa).toString('base64') } }],
    users: [{ name: 'weft-controller', user: { token: await token(p, 'weft-controller') } }],
    contexts: [{ name: 'weft', context: { cluster: 'playground', user: 'weft-controller' } }],
    'current-context': 'weft',
  };
  await writeFile(paths.controllerKubeconfig, JSON.stringify(kc), { mode: 0o600 });

  sup.start({
    name: 'weft-controller',
    cmd: process.execPath,
    args: [
      join(repo, 'controller/main.ts'),
      `--kubeconfig=${paths.controllerKubeconfig}`,
      `--ca-cert=${paths.caCert}`,
      `--ca-key=${paths.caKey}`,
      `--listen=${p.hostIP}:15012`,
      `--health-listen=${p.hostIP}:15014`,
      `--mtls-mode=${opts.mtlsMode ?? 'PERMISSIVE'}`,
      '--identity=weft-controller-0',
    ],
    logFile: join(p.paths.logs, 'weft-controller.log'),
  });
  // Agents run from their bundle, as the image ships them (see scripts/build-agent.ts).
  const agentEntry = await buildAgent();
  for (const n of p.nodes) await startAgent(p, n, sup, agentEntry, repo, paths);

  await waitFor('the Weft controller', 60_000, async () => (await fetch(`http://${p.hostIP}:15014/readyz`)).ok || 'not ready');
  await waitFor('Weft agents ready on every node', 60_000, async () => {
    const states = await Promise.all(p.nodes.map((n) => fetch(`http://${n.ip}:15021/healthz/ready`).then((r) => r.ok, () => false)));
    return states.every(Boolean) || `${states.filter(Boolean).length}/${p.nodes.length} ready`;
  });
  await serveMeshControl(p, sup);
  return paths;
}

export function agentDir(n: NodePlan): string {
  return join(n.dir, 'weft');
}

/** The supervisor's mesh control socket (HTTP): `POST /agents/<node>/restart`. */
export function meshControlSocket(p: PlaygroundPlan): string {
  return join(p.dir, 'mesh.sock');
}

/** How long a new agent may take to become ready (state, certificates, listeners). */
const AGENT_READY_TIMEOUT_MS = 120_000;

export interface AgentRestart extends Replacement {
  node: string;
}

/**
 * Upgrades the agent of node `node` in place: a new process with the same environment, ready
 * (by its own agent socket, which it takes over at start, so the answer is the new process's and
 * no other's) before the old one gets SIGTERM.
 */
export async function upgradeAgent(p: PlaygroundPlan, sup: Supervisor, node: string): Promise<AgentRestart> {
  const n = p.nodes.find((x) => x.name === node);
  if (!n) throw new SupervisorError('NO_SUCH_PROCESS', `no node ${node} (nodes: ${p.nodes.map((x) => x.name).join(', ')})`);
  const socket = join(agentDir(n), 'run', AGENT_SOCKET);
  const r = await sup.replace(`weft-agent/${n.name}`, {
    timeoutMs: AGENT_READY_TIMEOUT_MS,
    ready: async (pid) => {
      const status = await queryAgent(socket);
      return status.pid === pid && status.notReady === undefined;
    },
  });
  return { node, ...r };
}

async function serveMeshControl(p: PlaygroundPlan, sup: Supervisor): Promise<void> {
  const path = meshControlSocket(p);
  const server = createServer((req, res) => {
    const m = /^\/agents\/([^/]+)\/restart$/.exec(req.url ?? '');
    const reply = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method !== 'POST' || !m?.[1]) return reply(404, { error: { code: 'NOT_FOUND', message: 'POST /agents/<node>/restart' } });
    upgradeAgent(p, sup, decodeURIComponent(m[1])).then(
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

async function startAgent(p: PlaygroundPlan, n: NodePlan, sup: Supervisor, entry: string, repo: string, paths: MeshPaths): Promise<void> {
  const dir = agentDir(n);
  await mkdir(join(dir, 'run'), { recursive: true, mode: 0o700 });
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, await token(p, 'weft-agent', n.name), { mode: 0o600 });
  sup.start({
    name: `weft-agent/${n.name}`,
    netns: n.netns,
    cmd: process.execPath,
    args: [entry],
    env: {
      ...process.env,
      NODE_NAME: n.name,
      WEFT_CONTROLLER: `https://${p.hostIP}:15012`,
      WEFT_TOKEN_FILE: tokenFile,
      WEFT_CA_FILE: paths.caCert,
      WEFT_STATE_DIR: join(dir, 'run'),
      WEFT_CNI_BINARY: join(repo, 'dist/weft-cni'),
      WEFT_CNI_BIN_DIR: n.cniBinDir,
      WEFT_CNI_CONF_DIR: n.cniConfDir,
      WEFT_CNI_KUBE_API: `https://${p.hostIP}:${p.apiServerPort}`,
      WEFT_CNI_KUBE_CA_SOURCE: join(p.paths.pki, 'ca.crt'),
    },
    logFile: join(dir, 'agent.log'),
  });
}
