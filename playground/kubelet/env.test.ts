// Container environments and command lines as the kubelet builds them.
import t from 'tap';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { containerArgv, containerEnv, expand, firstServiceIP, parseQuantity, type EnvContext, type ObjectKind } from './env.ts';

const pod: V1Pod = {
  metadata: { name: 'web-1', namespace: 'shop', uid: 'u-1', labels: { app: 'web', tier: 'front' }, annotations: { note: 'x' } },
  spec: { nodeName: 'node-1', serviceAccountName: 'web', containers: [{ name: 'app', resources: { limits: { cpu: '250m', memory: '64Mi' } } }] },
};

const objects: Record<string, Record<string, string>> = {
  'configMap/shop/settings': { color: 'blue', size: 'L' },
  'secret/shop/creds': { password: 's3cret' },
};

function ctx(over: Partial<EnvContext> = {}): EnvContext {
  return {
    pod,
    podIPs: ['10.200.129.7'],
    hostIP: '10.200.0.11',
    nodeName: 'node-1',
    apiServiceIP: '10.200.96.1',
    nodeCPU: 2,
    nodeMemory: 4 * 2 ** 30,
    // The data the API server would return for these objects.
    lookup: (kind: ObjectKind, ns: string, name: string) => Promise.resolve(objects[`${kind}/${ns}/${name}`]),
    ...over,
  };
}

t.test('$(VAR) expansion: defined names are replaced, others kept, $$ escapes', async (t) => {
  const env = { A: 'x', B: 'y' };
  t.equal(expand('$(A)-$(B)', env), 'x-y');
  t.equal(expand('$(MISSING)', env), '$(MISSING)');
  t.equal(expand('$$(A)', env), '$(A)');
  t.equal(expand('cost: $5 and $(A', env), 'cost: $5 and $(A');
});

t.test('env: values, field references, config maps, secrets, in order', async (t) => {
  const c: V1Container = {
    name: 'app',
    envFrom: [{ configMapRef: { name: 'settings' }, prefix: 'CFG_' }],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
      { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
      { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
      { name: 'COLOR', valueFrom: { configMapKeyRef: { name: 'settings', key: 'color' } } },
      { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
      { name: 'URL', value: 'http://$(POD_IP):8080/$(POD_NAME)' },
      { name: 'CPUS', valueFrom: { resourceFieldRef: { resource: 'limits.cpu' } } },
      { name: 'MEM_MI', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi' } } },
      { name: 'OPTIONAL', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k', optional: true } } },
    ],
  };
  const env = await containerEnv(c, ctx());
  t.match(env, {
    POD_NAME: 'web-1',
    POD_NAMESPACE: 'shop',
    POD_IP: '10.200.129.7',
    NODE: 'node-1',
    HOST_IP: '10.200.0.11',
    SA: 'web',
    APP: 'web',
    COLOR: 'blue',
    PASSWORD: 's3cret',
    URL: 'http://10.200.129.7:8080/web-1',
    CPUS: '1',
    MEM_MI: '64',
    CFG_color: 'blue',
    CFG_size: 'L',
    KUBERNETES_SERVICE_HOST: '10.200.96.1',
    KUBERNETES_SERVICE_PORT: '443',
    HOSTNAME: 'web-1',
  });
  t.ok(env.PATH, 'a default PATH');
  t.notOk('OPTIONAL' in env, 'a missing optional reference sets nothing');
});

t.test('a missing required reference is a CONTAINER_CONFIG error with the kubelet message', async (t) => {
  const missingMap: V1Container = { name: 'app', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'absent', key: 'x' } } }] };
  await t.rejects(containerEnv(missingMap, ctx()), { code: 'CONTAINER_CONFIG', message: 'configMap "absent" not found' });
  const missingKey: V1Container = { name: 'app', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'settings', key: 'nope' } } }] };
  await t.rejects(containerEnv(missingKey, ctx()), { code: 'CONTAINER_CONFIG', message: "couldn't find key nope in configMap settings" });
  const badField: V1Container = { name: 'app', env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'spec.nope' } } }] };
  await t.rejects(containerEnv(badField, ctx()), { code: 'CONTAINER_CONFIG' });
});

t.test('command and args are expanded against the environment', async (t) => {
  const c: V1Container = { name: 'app', command: ['sh', '-c'], args: ['echo $(GREETING) $$(HOME)'], env: [{ name: 'GREETING', value: 'hi' }] };
  t.same(containerArgv(c, await containerEnv(c, ctx())), ['sh', '-c', 'echo hi $(HOME)']);
});

t.test('helpers: the kubernetes Service address and quantities', async (t) => {
  t.equal(firstServiceIP('10.200.96.0/20'), '10.200.96.1');
  t.equal(firstServiceIP('10.96.0.0/12'), '10.96.0.1');
  t.throws(() => firstServiceIP('fd00::/108'), { code: 'CONFIG_INVALID' });
  t.equal(parseQuantity('250m'), 0.25);
  t.equal(parseQuantity('64Mi'), 64 * 2 ** 20);
  t.equal(parseQuantity('1G'), 1e9);
  t.equal(parseQuantity('2'), 2);
  t.throws(() => parseQuantity('lots'), { code: 'CONTAINER_CONFIG' });
});

t.test('service links: the variables of the namespace Services, unless the pod turns them off', async (t) => {
  const services = () =>
    Promise.resolve([
      { metadata: { name: 'weft-test-server' }, spec: { clusterIP: '10.200.96.20', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { port: 9000 }] } },
      { metadata: { name: 'headless' }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } },
    ]);
  const env = await containerEnv({ name: 'app' }, ctx({ services }));
  t.match(env, {
    WEFT_TEST_SERVER_SERVICE_HOST: '10.200.96.20',
    WEFT_TEST_SERVER_SERVICE_PORT: '8080',
    WEFT_TEST_SERVER_SERVICE_PORT_HTTP: '8080',
    WEFT_TEST_SERVER_PORT: 'tcp://10.200.96.20:8080',
    WEFT_TEST_SERVER_PORT_9000_TCP_ADDR: '10.200.96.20',
    KUBERNETES_SERVICE_HOST: '10.200.96.1',
  });
  t.notOk('HEADLESS_SERVICE_HOST' in env, 'headless Services have no address to link');
  const off = await containerEnv({ name: 'app' }, ctx({ services, pod: { ...pod, spec: { ...pod.spec, containers: pod.spec?.containers ?? [], enableServiceLinks: false } } }));
  t.notOk('WEFT_TEST_SERVER_SERVICE_HOST' in off, 'enableServiceLinks: false');
});
