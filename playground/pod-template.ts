// A pod template of the chart made into the environment of a local process, the way the kubelet
// makes a pod into a container: each volume written into a directory of its own (ConfigMaps and
// Secrets read from the API server, the ServiceAccount token from the TokenRequest API, host
// paths mapped into the node's directory), and the container's env resolved by the simulated
// kubelet's own code, with every path under a volume mount pointed at where that volume now is.
//
// The playground's kubelet runs commands, not images, so it cannot run Weft's own pods; the chart
// runner (chart-runner.ts) runs them as processes instead, from the objects `helm install`
// created. Their configuration still comes from the chart: a value the chart gets wrong is wrong
// here too.
import type { V1PodTemplateSpec, V1Volume } from '@kubernetes/client-node';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from '../api/coded-error.ts';
import type { NodePlan } from './config.ts';
import { containerEnv, type DataLookup } from './kubelet/env.ts';

export class PodTemplateError extends CodedError<'UNSUPPORTED_VOLUME' | 'MISSING_OBJECT' | 'NO_CONTAINER' | 'NO_NODE'> {
  override readonly name = 'PodTemplateError';
}

/** Where a node's host path `path` lives on the playground: under the node's own root. */
export function hostPathOnNode(n: NodePlan, path: string): string {
  return join(n.hostRoot, path);
}

export interface PodContext {
  namespace: string;
  /** The name the pod would have (fieldRef metadata.name). */
  podName: string;
  /** The node it runs on; required for host paths. Absent: the root namespace (a control-plane node). */
  node?: NodePlan;
  nodeName: string;
  hostIP: string;
  apiServiceIP: string;
  /** This pod's directory: its volumes go under volumes/<name>. Emptied first. */
  dir: string;
  lookup: DataLookup;
  /** A token for the ServiceAccount from the TokenRequest API. */
  token: (serviceAccount: string) => Promise<string>;
}

export interface PodProcess {
  env: Record<string, string>;
  serviceAccount: string;
  /** mountPath → directory on this machine, longest path first. */
  mounts: { mountPath: string; local: string }[];
}

/** The default token mount of a pod with automountServiceAccountToken. */
export const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

export async function podProcess(template: V1PodTemplateSpec, containerName: string, ctx: PodContext): Promise<PodProcess> {
  const spec = template.spec;
  const container = spec?.containers.find((c) => c.name === containerName);
  if (!spec || !container) throw new PodTemplateError('NO_CONTAINER', `the pod template has no container "${containerName}"`);
  const serviceAccount = spec.serviceAccountName ?? 'default';
  await rm(ctx.dir, { recursive: true, force: true });
  await mkdir(ctx.dir, { recursive: true, mode: 0o700 });

  const mounts: PodProcess['mounts'] = [];
  for (const m of container.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === m.name);
    if (!volume) throw new PodTemplateError('MISSING_OBJECT', `volumeMount ${m.name} names no volume of the pod`);
    mounts.push({ mountPath: m.mountPath, local: await writeVolume(volume, serviceAccount, ctx) });
  }
  if (spec.automountServiceAccountToken !== false && !mounts.some((m) => m.mountPath === SERVICE_ACCOUNT_MOUNT)) {
    mounts.push({ mountPath: SERVICE_ACCOUNT_MOUNT, local: await writeServiceAccountMount(serviceAccount, ctx) });
  }
  mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);

  const pod = {
    metadata: { ...template.metadata, name: ctx.podName, namespace: ctx.namespace },
    spec: { ...spec, nodeName: ctx.nodeName, serviceAccountName: serviceAccount },
  };
  const env = await containerEnv(container, {
    pod,
    podIPs: [ctx.node?.ip ?? ctx.hostIP],
    hostIP: ctx.node?.ip ?? ctx.hostIP,
    nodeName: ctx.nodeName,
    apiServiceIP: ctx.apiServiceIP,
    nodeCPU: 2,
    nodeMemory: 4 * 2 ** 30,
    lookup: ctx.lookup,
  });
  for (const [k, v] of Object.entries(env)) env[k] = inMounts(v, mounts);
  return { env, serviceAccount, mounts };
}

/** A path the container would see, as this machine sees it (unchanged if under no mount). */
export function inMounts(path: string, mounts: PodProcess['mounts']): string {
  for (const m of mounts) {
    if (path === m.mountPath) return m.local;
    if (path.startsWith(`${m.mountPath}/`)) return join(m.local, path.slice(m.mountPath.length + 1));
  }
  return path;
}

async function writeVolume(v: V1Volume, serviceAccount: string, ctx: PodContext): Promise<string> {
  if (v.hostPath) {
    if (!ctx.node) throw new PodTemplateError('NO_NODE', `volume ${v.name}: a host path needs a node`);
    const path = hostPathOnNode(ctx.node, v.hostPath.path);
    if (v.hostPath.type === 'DirectoryOrCreate') await mkdir(path, { recursive: true, mode: 0o755 });
    return path;
  }
  const dir = join(ctx.dir, 'volumes', v.name);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (v.secret || v.configMap) {
    const kind = v.secret ? 'secret' : 'configMap';
    const src = v.secret ?? v.configMap;
    const name = v.secret?.secretName ?? v.configMap?.name ?? '';
    await writeItems(dir, kind, name, src?.items, src?.optional === true, modeOf(src?.defaultMode, 0o644), ctx);
    return dir;
  }
  if (v.projected) {
    const mode = modeOf(v.projected.defaultMode, 0o644);
    for (const s of v.projected.sources ?? []) {
      if (s.serviceAccountToken) {
        await writeFile(join(dir, s.serviceAccountToken.path), await ctx.token(serviceAccount), { mode });
      } else if (s.configMap || s.secret) {
        const kind = s.secret ? 'secret' : 'configMap';
        const src = s.secret ?? s.configMap;
        await writeItems(dir, kind, src?.name ?? '', src?.items, src?.optional === true, mode, ctx);
      } else {
        throw new PodTemplateError('UNSUPPORTED_VOLUME', `volume ${v.name}: the playground projects tokens, ConfigMaps and Secrets only`);
      }
    }
    return dir;
  }
  throw new PodTemplateError('UNSUPPORTED_VOLUME', `volume ${v.name}: the playground mounts hostPath, secret, configMap and projected volumes only`);
}

async function writeItems(
  dir: string,
  kind: 'secret' | 'configMap',
  name: string,
  items: { key: string; path: string; mode?: number }[] | undefined,
  optional: boolean,
  mode: number,
  ctx: PodContext,
): Promise<void> {
  const data = await ctx.lookup(kind, ctx.namespace, name);
  if (!data) {
    if (optional) return;
    throw new PodTemplateError('MISSING_OBJECT', `${kind} ${ctx.namespace}/${name} not found (the kubelet would keep the pod in ContainerCreating)`);
  }
  for (const item of items ?? Object.keys(data).map((key): { key: string; path: string; mode?: number } => ({ key, path: key }))) {
    const value = data[item.key];
    if (value === undefined) throw new PodTemplateError('MISSING_OBJECT', `${kind} ${ctx.namespace}/${name} has no key ${item.key}`);
    await writeFile(join(dir, item.path), value, { mode: item.mode ?? mode });
  }
}

async function writeServiceAccountMount(serviceAccount: string, ctx: PodContext): Promise<string> {
  const dir = join(ctx.dir, 'volumes', 'kube-api-access');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const ca = await ctx.lookup('configMap', ctx.namespace, 'kube-root-ca.crt');
  if (!ca?.['ca.crt']) throw new PodTemplateError('MISSING_OBJECT', `configMap ${ctx.namespace}/kube-root-ca.crt not found`);
  await writeFile(join(dir, 'token'), await ctx.token(serviceAccount), { mode: 0o600 });
  await writeFile(join(dir, 'ca.crt'), ca['ca.crt'], { mode: 0o644 });
  await writeFile(join(dir, 'namespace'), ctx.namespace, { mode: 0o644 });
  return dir;
}

/** The API's file modes are decimal numbers of octal permissions (0440 arrives as 288). */
function modeOf(mode: number | undefined, fallback: number): number {
  return typeof mode === 'number' ? mode : fallback;
}
