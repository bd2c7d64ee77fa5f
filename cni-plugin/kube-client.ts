// The plugin's own, deliberately tiny, Kubernetes API client: two GETs (the pod and its
// namespace) over plain https, used only when the agent cannot say whether a pod is meshed.
// A client library would cost more startup time than the whole plugin; this needs only the
// opt-in annotation and label. Loaded lazily: most pod events never get here.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { decideMeshed } from '../api/cni.ts';
import type { KubernetesAccess, MeshDecision, PodIdentity } from '../api/cni.ts';
import { CodedError } from '../api/coded-error.ts';

export class KubeApiError extends CodedError<'KUBE_CREDENTIALS' | 'KUBE_UNREACHABLE' | 'KUBE_HTTP' | 'KUBE_DECODE' | 'KUBE_STALE_POD'> {
  override readonly name = 'KubeApiError';
}

interface ObjectMeta {
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Asks the API server whether the pod opted into the mesh (DESIGN.md's opt-in rules). */
export async function decideMeshedFromApi(access: KubernetesAccess, pod: PodIdentity, timeoutMs: number): Promise<MeshDecision> {
  let token: string;
  let ca: Buffer;
  try {
    [token, ca] = await Promise.all([readFile(access.tokenFile, 'utf8').then((t) => t.trim()), readFile(access.caFile)]);
  } catch (err) {
    // The message names the file, never its contents.
    throw new KubeApiError('KUBE_CREDENTIALS', `cannot read API credentials: ${(err as Error).message}`);
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new KubeApiError('KUBE_CREDENTIALS', `${access.tokenFile} does not hold a bearer token`);
  }
  const { request } = await import('node:https');
  const deadline = AbortSignal.timeout(timeoutMs);
  const get = (path: string): Promise<ObjectMeta> =>
    new Promise((resolve, reject) => {
      const req = request(new URL(path, access.apiServer), {
        method: 'GET',
        ca,
        agent: false,
        signal: deadline,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      });
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(new KubeApiError('KUBE_UNREACHABLE', `GET ${path}: ${err.name === 'AbortError' ? `no answer within ${timeoutMs} ms` : (err.code ?? err.message)}`)),
      );
      req.on('response', (res) => void readMeta(res, path).then(resolve, reject));
      req.end();
    });

  const ns = encodeURIComponent(pod.namespace);
  const [podMeta, nsMeta] = await Promise.all([
    get(`/api/v1/namespaces/${ns}/pods/${encodeURIComponent(pod.name)}`),
    get(`/api/v1/namespaces/${ns}`),
  ]);
  if (pod.uid !== '' && podMeta.uid !== pod.uid) {
    // A pod of the same name was recreated; its opt-in may differ from the one being wired.
    throw new KubeApiError('KUBE_STALE_POD', `pod ${pod.namespace}/${pod.name} has UID ${podMeta.uid}, expected ${pod.uid}`);
  }
  return decideMeshed(podMeta.annotations, nsMeta.labels);
}

async function readMeta(res: IncomingMessage, path: string): Promise<ObjectMeta> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  if (res.statusCode !== 200) {
    throw new KubeApiError('KUBE_HTTP', `GET ${path}: HTTP ${res.statusCode ?? 0}`);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { metadata?: Record<string, unknown> };
    const m = body.metadata ?? {};
    return { uid: typeof m.uid === 'string' ? m.uid : '', labels: stringMap(m.labels), annotations: stringMap(m.annotations) };
  } catch {
    throw new KubeApiError('KUBE_DECODE', `GET ${path}: answer is not JSON`);
  }
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}
