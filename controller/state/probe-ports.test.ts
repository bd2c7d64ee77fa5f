import t from 'tap';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { probePorts, resolveProbePort } from './probe-ports.ts';

const container = (over: Partial<V1Container> = {}): V1Container => ({ name: 'app', ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 9901 }], ...over });
const pod = (containers: V1Container[], initContainers: V1Container[] = []): V1Pod => ({ spec: { containers, initContainers } });

t.test('named ports resolve against the container, as the kubelet resolves them', async (t) => {
  t.equal(resolveProbePort(8080, container()), 8080);
  t.equal(resolveProbePort('admin', container()), 9901);
  t.equal(resolveProbePort('8081', container()), 8081, 'a number written as a string');
  t.equal(resolveProbePort('metrics', container()), undefined, 'an unknown name probes nothing');
  t.equal(resolveProbePort(undefined, container()), undefined);
});

t.test('every probe kind and container kind counts; exec and other hosts do not', async (t) => {
  const ports = probePorts(
    pod(
      [
        container({
          readinessProbe: { httpGet: { port: 'http', path: '/ready' } },
          livenessProbe: { tcpSocket: { port: 'admin' } },
          startupProbe: { grpc: { port: 9090 } },
        }),
        container({ name: 'exec', readinessProbe: { exec: { command: ['true'] } } }),
        container({ name: 'elsewhere', livenessProbe: { httpGet: { port: 7070, host: '10.9.9.9' } } }),
      ],
      [container({ name: 'sidecar', ports: [{ name: 'http', containerPort: 15000 }], startupProbe: { httpGet: { port: 'http' } } })],
    ),
  );
  t.strictSame(ports, [8080, 9090, 9901, 15000], 'sorted, unique; a name resolves in its own container');
  t.strictSame(probePorts(pod([container({ readinessProbe: { httpGet: { port: 8080 } }, livenessProbe: { httpGet: { port: 8080 } } })])), [8080]);
  t.strictSame(probePorts({}), [], 'no spec, no ports');
  t.strictSame(probePorts(pod([container({ readinessProbe: { tcpSocket: { port: 70000 } } })])), [], 'out of range is dropped');
});
