// The demo app `npm start` deploys: an HTTP echo Deployment spread over the nodes, a Service in
// front of it, and a client pod to try things from.
import { join } from 'node:path';
import type { PlaygroundPlan } from './config.ts';
import { run } from './exec.ts';
import { BUSYBOX_IMAGE } from './images.ts';

export const DEMO_NAMESPACE = 'demo';


/**
 * The demo's objects. On real nodes the containers run images built on the machine: busybox's
 * httpd serves, its wget asks; on simulated nodes the commands run as processes and the image
 * is informational.
 */
export function demoManifests(runtime: 'simulated' | 'real' = 'simulated'): object {
  const labels = { app: 'echo' };
  const real = runtime === 'real';
  const server = real
    ? { image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['httpd', '-f', '-p', '8080', '-h', '/var/www'] }
    : { image: 'python:3 (informational)', command: ['python3', '-m', 'http.server', '8080', '--bind', '0.0.0.0'], workingDir: '/tmp' };
  const client = real ? { image: BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '2147483647'] } : { image: 'busybox (informational)', command: ['sleep', 'infinity'] };
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEMO_NAMESPACE, labels: { 'weft.dev/mesh': 'enabled' } } },
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'echo', namespace: DEMO_NAMESPACE },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              topologySpreadConstraints: [
                { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: labels } },
              ],
              containers: [
                {
                  name: 'http',
                  ...server,
                  ports: [{ name: 'http', containerPort: 8080 }],
                  readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 2 },
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'echo', namespace: DEMO_NAMESPACE },
        spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http', appProtocol: 'http' }] },
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'client', namespace: DEMO_NAMESPACE },
        spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'shell', ...client }] },
      },
    ],
  };
}

export async function deployDemo(p: PlaygroundPlan, runtime: 'simulated' | 'real' = 'simulated'): Promise<void> {
  const kubectl = join(p.binDir, 'kubectl');
  const kc = `--kubeconfig=${p.paths.adminKubeconfig}`;
  await run(kubectl, [kc, 'apply', '-f', '-'], { input: JSON.stringify(demoManifests(runtime)) });
  await run(kubectl, [kc, '-n', DEMO_NAMESPACE, 'wait', '--for=condition=Ready', 'pod', '--all', '--timeout=90s'], { timeoutMs: 100_000 });
  const svc = (await run(kubectl, [kc, '-n', DEMO_NAMESPACE, 'get', 'svc', 'echo', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  process.stderr.write(
    [
      '',
      'The demo app is running. Try:',
      `  npx weft dev status                                   # nodes, pods, and which are meshed`,
      `  npx weft dev kubectl get pods -A -o wide              # the real API server`,
      runtime === 'real'
        ? `  npx weft dev kubectl -n demo exec client -- wget -qO- http://echo/   # through the echo Service, inside an mTLS tunnel`
        : `  npx weft dev exec demo/client -- curl -s http://${svc}/   # through the echo Service, inside an mTLS tunnel`,
      `  npx weft dev kubectl label ns demo weft.dev/mesh-        # take the namespace out of the mesh`,
      `  npx weft dev down                                     # remove everything`,
      '',
    ].join('\n'),
  );
}
