// The playground's control plane: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler in the root namespace, and kube-proxy (nftables mode) in every node namespace.
// Real authentication and authorization: client certificates, Node + RBAC authorizers,
// NodeRestriction, and service-account tokens signed by the playground's own key.
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import type { NodePlan, PlaygroundPlan } from './config.ts';
import { kubeconfig, writePem, type ClusterPki, type KeyPairPem } from './pki.ts';
import type { Supervisor } from './supervisor.ts';

export interface PkiFiles {
  ca: string;
  caKey: string;
  apiserverCert: string;
  apiserverKey: string;
  saKey: string;
  saPub: string;
  /** The API server's client certificate towards kubelets (logs, exec, port-forward). */
  kubeletClientCert: string;
  kubeletClientKey: string;
}

export function apiServerURL(p: PlaygroundPlan): string {
  return `https://${p.hostIP}:${p.apiServerPort}`;
}

export async function writePki(p: PlaygroundPlan, pki: ClusterPki): Promise<PkiFiles> {
  const d = p.paths.pki;
  return {
    ca: await writePem(d, 'ca.crt', pki.caPem),
    caKey: await writePem(d, 'ca.key', pki.caKeyPem),
    apiserverCert: await writePem(d, 'apiserver.crt', pki.apiserver.certPem),
    apiserverKey: await writePem(d, 'apiserver.key', pki.apiserver.keyPem),
    saKey: await writePem(d, 'sa.key', pki.serviceAccountKeyPem),
    saPub: await writePem(d, 'sa.pub', pki.serviceAccountPubPem),
    // The admin identity (system:masters): the kubelet's webhook authorizer lets it do anything.
    kubeletClientCert: await writePem(d, 'apiserver-kubelet-client.crt', pki.admin.certPem),
    kubeletClientKey: await writePem(d, 'apiserver-kubelet-client.key', pki.admin.keyPem),
  };
}

/** Writes a kubeconfig (mode 0600: it holds a private key) and returns its path. */
export async function writeKubeconfig(p: PlaygroundPlan, pki: ClusterPki, path: string, user: string, cred: KeyPairPem): Promise<string> {
  await writeFile(path, kubeconfig(apiServerURL(p), pki.caPem, user, cred), { mode: 0o600 });
  return path;
}

const bin = (p: PlaygroundPlan, name: string) => join(p.binDir, name);
const log = (p: PlaygroundPlan, name: string) => join(p.paths.logs, `${name}.log`);

export function startEtcd(p: PlaygroundPlan, sup: Supervisor): void {
  const client = `http://127.0.0.1:${p.etcdClientPort}`;
  const peer = `http://127.0.0.1:${p.etcdPeerPort}`;
  sup.start({
    name: 'etcd',
    cmd: bin(p, 'etcd'),
    args: [
      '--name=playground',
      `--data-dir=${p.paths.etcdData}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=playground=${peer}`,
      // The data directory is on tmpfs and dies with the playground: fsync buys nothing.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    logFile: log(p, 'etcd'),
  });
}

export function startApiServer(p: PlaygroundPlan, files: PkiFiles, sup: Supervisor): void {
  sup.start({
    name: 'kube-apiserver',
    cmd: bin(p, 'kube-apiserver'),
    args: [
      `--etcd-servers=http://127.0.0.1:${p.etcdClientPort}`,
      `--bind-address=${p.hostIP}`,
      `--advertise-address=${p.hostIP}`,
      `--secure-port=${p.apiServerPort}`,
      `--service-cluster-ip-range=${p.serviceCIDR}`,
      `--client-ca-file=${files.ca}`,
      `--tls-cert-file=${files.apiserverCert}`,
      `--tls-private-key-file=${files.apiserverKey}`,
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${files.saPub}`,
      `--service-account-signing-key-file=${files.saKey}`,
      '--api-audiences=https://kubernetes.default.svc.cluster.local',
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true',
      `--kubelet-client-certificate=${files.kubeletClientCert}`,
      `--kubelet-client-key=${files.kubeletClientKey}`,
      // Node names do not resolve on the playground's fabric: reach kubelets by their InternalIP.
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      '--profiling=false',
      '--endpoint-reconciler-type=lease',
      '--v=1',
    ],
    logFile: log(p, 'kube-apiserver'),
  });
}

export function startControllerManager(p: PlaygroundPlan, files: PkiFiles, kubeconfigPath: string, sup: Supervisor): void {
  sup.start({
    name: 'kube-controller-manager',
    cmd: bin(p, 'kube-controller-manager'),
    args: [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      `--bind-address=${p.hostIP}`,
      `--cluster-cidr=${p.clusterCIDR}`,
      `--service-cluster-ip-range=${p.serviceCIDR}`,
      `--service-account-private-key-file=${files.saKey}`,
      `--root-ca-file=${files.ca}`,
      `--cluster-signing-cert-file=${files.ca}`,
      `--cluster-signing-key-file=${files.caKey}`,
      '--use-service-account-credentials=true',
      '--leader-elect=false',
      '--profiling=false',
      '--v=1',
      // The DaemonSet controller's decisions (each sync, each pod it waits on) at no cost to the
      // rest of the log: the agent's rolling update is what the playground's users watch most.
      '--vmodule=daemon_controller=4,update=5,controller_utils=4',
    ],
    logFile: log(p, 'kube-controller-manager'),
  });
}

export function startScheduler(p: PlaygroundPlan, kubeconfigPath: string, sup: Supervisor): void {
  sup.start({
    name: 'kube-scheduler',
    cmd: bin(p, 'kube-scheduler'),
    args: [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      `--bind-address=${p.hostIP}`,
      '--leader-elect=false',
      '--profiling=false',
      '--v=1',
    ],
    logFile: log(p, 'kube-scheduler'),
  });
}

export async function startKubeProxy(p: PlaygroundPlan, n: NodePlan, kubeconfigPath: string, sup: Supervisor): Promise<void> {
  const config = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'nftables',
    clientConnection: { kubeconfig: kubeconfigPath },
    hostnameOverride: n.name,
    bindAddress: n.ip,
    clusterCIDR: p.clusterCIDR,
    healthzBindAddress: `${n.ip}:10256`,
    metricsBindAddress: `${n.ip}:10249`,
    // The conntrack table size is a host-wide setting: a simulated node must not change it.
    conntrack: { maxPerCore: 0, min: 0 },
    detectLocalMode: 'NodeCIDR',
  };
  const path = join(n.dir, 'kube-proxy.json');
  await writeFile(path, JSON.stringify(config, null, 2));
  sup.start({
    name: `kube-proxy/${n.name}`,
    netns: n.netns,
    cmd: bin(p, 'kube-proxy'),
    args: [`--config=${path}`, '--v=1'],
    logFile: join(n.dir, 'kube-proxy.log'),
  });
}

export interface ClientCreds {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** GET a path on the API server with a client certificate; resolves with status and body. */
export function apiGet(p: PlaygroundPlan, creds: ClientCreds, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: p.hostIP, port: p.apiServerPort, path, method: 'GET', ca: creds.caPem, cert: creds.certPem, key: creds.keyPem, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Thrown by a waitFor check to stop waiting at once (other errors are reasons to keep polling). */
export class GiveUp extends Error {}

/** Polls until check() resolves true, or throws after timeoutMs with the last reason. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean | string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await check();
      if (r === true) return;
      if (typeof r === 'string') last = r;
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
