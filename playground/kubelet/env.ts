// A container's environment and command line, built as the kubelet builds them: the API server's
// service variables first, then envFrom, then env in order, each value able to refer to the ones
// before it as $(NAME); then command and args expanded against the result.
import type { V1Container, V1EnvVar, V1Pod, V1Service } from '@kubernetes/client-node';
import { KubeletError } from './errors.ts';
import { DEFAULT_PATH } from './process.ts';

export type ObjectKind = 'configMap' | 'secret';

/** Reads a ConfigMap's or Secret's data (decoded); undefined if it does not exist. */
export type DataLookup = (kind: ObjectKind, namespace: string, name: string) => Promise<Record<string, string> | undefined>;

/** The Services of a namespace, for the service-link variables. */
export type ServiceLookup = (namespace: string) => Promise<V1Service[]>;

export interface EnvContext {
  pod: V1Pod;
  podIPs: string[];
  hostIP: string;
  nodeName: string;
  /** ClusterIP of the `kubernetes` Service. */
  apiServiceIP: string;
  /** The node's allocatable CPU cores and memory bytes, for resourceFieldRef without limits. */
  nodeCPU: number;
  nodeMemory: number;
  lookup: DataLookup;
  /** Absent: no service links (only the `kubernetes` Service's variables). */
  services?: ServiceLookup;
}

/** The environment a container's process gets. Throws CONTAINER_CONFIG (CreateContainerConfigError). */
export async function containerEnv(c: V1Container, ctx: EnvContext): Promise<Record<string, string>> {
  const ns = ctx.pod.metadata?.namespace ?? 'default';
  // Service links (enableServiceLinks, default true): the variables of every Service in the pod's
  // namespace that existed when the container started; the playground has no cluster DNS, so
  // these are how a pod finds a Service by name here.
  const links = ctx.services && ctx.pod.spec?.enableServiceLinks !== false ? serviceLinks(await ctx.services(ns)) : {};
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOSTNAME: ctx.pod.spec?.hostname ?? ctx.pod.metadata?.name ?? '',
    ...links,
    ...serviceEnv(ctx.apiServiceIP),
  };
  for (const src of c.envFrom ?? []) {
    const ref = src.configMapRef ?? src.secretRef;
    if (!ref?.name) continue;
    const kind: ObjectKind = src.configMapRef ? 'configMap' : 'secret';
    const data = await ctx.lookup(kind, ns, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw configError(`${kind} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) env[`${src.prefix ?? ''}${k}`] = v;
  }
  for (const e of c.env ?? []) {
    const v = await envValue(e, c, ctx, env);
    if (v !== undefined) env[e.name] = v;
  }
  return env;
}

/** command + args with $(VAR) references expanded, as the kubelet does before it creates the container. */
export function containerArgv(c: V1Container, env: Record<string, string>): string[] {
  return [...(c.command ?? []), ...(c.args ?? [])].map((s) => expand(s, env));
}

/**
 * Kubernetes' $(VAR) expansion: a defined VAR is replaced, an undefined one is left as written,
 * and $$ escapes a $.
 */
export function expand(input: string, env: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch !== '$' || i + 1 >= input.length) {
      out += ch;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close === -1) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      out += Object.hasOwn(env, name) ? env[name] : `$(${name})`;
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}

/** First usable address of a CIDR: where the `kubernetes` Service lives in a service range. */
export function firstServiceIP(cidr: string): string {
  const [base] = cidr.split('/');
  const parts = (base ?? '').split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new KubeletError('CONFIG_INVALID', `service CIDR ${cidr} is not an IPv4 CIDR`);
  }
  const n = (((parts[0] as number) << 24) | ((parts[1] as number) << 16) | ((parts[2] as number) << 8) | (parts[3] as number)) >>> 0;
  const ip = n + 1;
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.');
}

/** Docker-link style variables, as the kubelet writes them: FOO_BAR_SERVICE_HOST, FOO_BAR_PORT_80_TCP, ... */
export function serviceLinks(services: readonly V1Service[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const svc of services) {
    const ip = svc.spec?.clusterIP;
    const ports = svc.spec?.ports ?? [];
    if (!ip || ip === 'None' || ports.length === 0) continue;
    const name = (svc.metadata?.name ?? '').toUpperCase().replace(/-/g, '_');
    const first = ports[0] as { port: number; protocol?: string };
    env[`${name}_SERVICE_HOST`] = ip;
    env[`${name}_SERVICE_PORT`] = String(first.port);
    env[`${name}_PORT`] = `${(first.protocol ?? 'TCP').toLowerCase()}://${ip}:${first.port}`;
    for (const p of ports) {
      const proto = (p.protocol ?? 'TCP').toUpperCase();
      if (p.name) env[`${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`] = String(p.port);
      const prefix = `${name}_PORT_${p.port}_${proto}`;
      env[prefix] = `${proto.toLowerCase()}://${ip}:${p.port}`;
      env[`${prefix}_PROTO`] = proto.toLowerCase();
      env[`${prefix}_PORT`] = String(p.port);
      env[`${prefix}_ADDR`] = ip;
    }
  }
  return env;
}

function serviceEnv(ip: string): Record<string, string> {
  return {
    KUBERNETES_SERVICE_HOST: ip,
    KUBERNETES_SERVICE_PORT: '443',
    KUBERNETES_SERVICE_PORT_HTTPS: '443',
    KUBERNETES_PORT: `tcp://${ip}:443`,
    KUBERNETES_PORT_443_TCP: `tcp://${ip}:443`,
    KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
    KUBERNETES_PORT_443_TCP_PORT: '443',
    KUBERNETES_PORT_443_TCP_ADDR: ip,
  };
}

async function envValue(e: V1EnvVar, c: V1Container, ctx: EnvContext, env: Record<string, string>): Promise<string | undefined> {
  if (!e.valueFrom) return expand(e.value ?? '', env);
  const { fieldRef, configMapKeyRef, secretKeyRef, resourceFieldRef } = e.valueFrom;
  if (fieldRef) return fieldValue(fieldRef.fieldPath, ctx);
  if (resourceFieldRef) return resourceValue(resourceFieldRef.resource, resourceFieldRef.divisor, resourceFieldRef.containerName ?? c.name, ctx);
  const keyRef = configMapKeyRef ?? secretKeyRef;
  if (keyRef) {
    const kind: ObjectKind = configMapKeyRef ? 'configMap' : 'secret';
    const data = await ctx.lookup(kind, ctx.pod.metadata?.namespace ?? 'default', keyRef.name ?? '');
    const value = data?.[keyRef.key];
    if (value === undefined && !keyRef.optional) {
      throw configError(data ? `couldn't find key ${keyRef.key} in ${kind} ${keyRef.name ?? ''}` : `${kind} "${keyRef.name ?? ''}" not found`);
    }
    return value;
  }
  throw configError(`env ${e.name}: unsupported valueFrom`);
}

function fieldValue(path: string, ctx: EnvContext): string {
  const { pod } = ctx;
  const sub = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (sub) {
    const map = sub[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[sub[2] as string] ?? '';
  }
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
      return formatMap(pod.metadata?.labels);
    case 'metadata.annotations':
      return formatMap(pod.metadata?.annotations);
    case 'spec.nodeName':
      return ctx.nodeName;
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP':
      return ctx.hostIP;
    case 'status.hostIPs':
      return ctx.hostIP;
    case 'status.podIP':
      return ctx.podIPs[0] ?? '';
    case 'status.podIPs':
      return ctx.podIPs.join(',');
    default:
      throw configError(`unsupported fieldRef ${path}`);
  }
}

function formatMap(m: Record<string, string> | undefined): string {
  return Object.entries(m ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join('\n');
}

function resourceValue(resource: string, divisor: string | undefined, containerName: string, ctx: EnvContext): string {
  const c = [...(ctx.pod.spec?.containers ?? []), ...(ctx.pod.spec?.initContainers ?? [])].find((x) => x.name === containerName);
  const [bucket, name] = resource.split('.') as [string, string | undefined];
  const table = bucket === 'limits' ? c?.resources?.limits : bucket === 'requests' ? c?.resources?.requests : undefined;
  let value: number;
  if (name === 'cpu') value = parseQuantity(table?.cpu ?? (bucket === 'limits' ? String(ctx.nodeCPU) : '0'));
  else if (name === 'memory') value = parseQuantity(table?.memory ?? (bucket === 'limits' ? String(ctx.nodeMemory) : '0'));
  else if (name === 'ephemeral-storage') value = parseQuantity(table?.['ephemeral-storage'] ?? '0');
  else throw configError(`unsupported resourceFieldRef ${resource}`);
  const d = parseQuantity(divisor ?? '1');
  // The kubelet rounds up: 250m of CPU with divisor 1 is 1.
  return String(Math.ceil(value / (d || 1)));
}

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A resource.Quantity ("250m", "64Mi", "1.5", "2e3") as a number. */
export function parseQuantity(q: string): number {
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(q.trim());
  const mult = m ? SUFFIX[m[2] ?? ''] : undefined;
  if (!m || mult === undefined) throw configError(`invalid quantity ${JSON.stringify(q)}`);
  return Number(m[1]) * mult;
}

function configError(message: string): KubeletError {
  return new KubeletError('CONTAINER_CONFIG', message);
}
