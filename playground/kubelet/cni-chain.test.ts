// The CNI chain runner against Debian's real ptp, host-local and tuning plugins, in network
// namespaces made for the test: one plays the node (where plugins run and the host-side veth
// lands), one the pod.
import t from 'tap';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cniAdd, cniDel, CniPluginError, type Attachment } from './cni-chain.ts';
import { loadNetworkConfig, parseNetworkConfig, type NetworkConfigList } from './cni-config.ts';
import { sandboxIPs } from './cni-result.ts';
import { KubeletError } from './errors.ts';
import { run } from './exec.ts';
import { netnsPath } from './netns.ts';
import { installRecorder, netFixture, ptpPlugins, readRecord, type NetFixture } from './test-support.ts';

function attachment(f: NetFixture): Attachment {
  return {
    containerId: `sandbox${f.suffix}`,
    netnsPath: netnsPath(f.podNs),
    ifName: 'eth0',
    args: [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', 'default'],
      ['K8S_POD_NAME', 'web'],
      ['K8S_POD_INFRA_CONTAINER_ID', `sandbox${f.suffix}`],
      ['K8S_POD_UID', '1234'],
    ],
  };
}

function network(f: NetFixture, plugins = ptpPlugins(f)): NetworkConfigList {
  return parseNetworkConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'wkt', plugins }), join(f.dir, 'net.conflist'));
}

/** TCP from the node namespace to a one-shot listener in the pod namespace. */
async function tcpReachable(f: NetFixture, ip: string): Promise<string> {
  const listener = run(['socat', '-T', '5', 'TCP-LISTEN:7777,reuseaddr', 'SYSTEM:echo pong'], {
    netnsPath: netnsPath(f.podNs),
    timeoutMs: 8000,
  });
  let answer = '';
  for (let i = 0; i < 40 && answer === ''; i++) {
    const r = await run(['socat', '-T', '2', '-', `TCP:${ip}:7777`], { netnsPath: netnsPath(f.nodeNs), timeoutMs: 4000 });
    answer = r.stdout.trim();
    if (answer === '') await new Promise((r) => setTimeout(r, 100));
  }
  await listener;
  return answer;
}

t.test('ADD attaches the pod: an IP from the range, reachable from the node', async (t) => {
  const f = await netFixture(t);
  const net = network(f);
  const att = attachment(f);
  const result = await cniAdd(net, att, f.chain);
  t.teardown(() => cniDel(net, att, result, f.chain).catch(() => {}));

  const ips = sandboxIPs(result, att.netnsPath);
  t.equal(ips.length, 1, 'one pod IP');
  const ip = ips[0] as string;
  t.match(ip, new RegExp(`^${f.subnet.split('.').slice(0, 3).join('\\.')}\\.`), 'inside the configured subnet');

  const inPod = await run(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'], { netnsPath: att.netnsPath });
  t.match(inPod.stdout, ip, 'eth0 in the pod namespace carries the address');
  t.equal(await tcpReachable(f, ip), 'pong', 'a TCP listener in the pod answers the node');

  // host-local records the lease under the container ID the runtime passed.
  const lease = await readFile(join(f.dir, 'ipam', 'wkt', ip), 'utf8');
  t.match(lease, att.containerId, 'the IPAM lease belongs to our sandbox ID');
});

t.test('DEL frees the address, removes the host side, and can be repeated', async (t) => {
  const f = await netFixture(t);
  const net = network(f);
  const att = attachment(f);
  const result = await cniAdd(net, att, f.chain);
  const ip = sandboxIPs(result, att.netnsPath)[0] as string;
  const vethsBefore = await run(['ip', '-o', 'link', 'show', 'type', 'veth'], { netnsPath: netnsPath(f.nodeNs) });
  t.equal(vethsBefore.stdout.trim().split('\n').length, 1, 'ADD made one host-side veth');

  await cniDel(net, att, result, f.chain);
  const leases = await readdir(join(f.dir, 'ipam', 'wkt'));
  t.notOk(leases.includes(ip), 'the IPAM lease is gone');
  const vethsAfter = await run(['ip', '-o', 'link', 'show', 'type', 'veth'], { netnsPath: netnsPath(f.nodeNs) });
  t.equal(vethsAfter.stdout.trim(), '', 'the host-side veth is gone');
  const eth0 = await run(['ip', 'link', 'show', 'eth0'], { netnsPath: att.netnsPath });
  t.not(eth0.code, 0, 'the pod has no eth0 any more');

  await cniDel(net, att, result, f.chain);
  await cniDel(net, att, undefined, f.chain);
  t.pass('DEL again, with and without prevResult, succeeds');

  const again = await cniAdd(net, att, f.chain);
  t.teardown(() => cniDel(net, att, again, f.chain).catch(() => {}));
  t.equal(sandboxIPs(again, att.netnsPath).length, 1, 'the same sandbox can be attached again');
});

t.test("a plugin's error result is reported with its code and message", async (t) => {
  const f = await netFixture(t);
  const net = network(f, ptpPlugins(f, '10.251.0.0/31'));
  const err = await cniAdd(net, attachment(f), f.chain).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CniPluginError, 'a CniPluginError');
  const e = err as CniPluginError;
  t.equal(e.code, 'CNI_PLUGIN_FAILED');
  t.equal(e.plugin, 'ptp');
  t.equal(e.command, 'ADD');
  t.equal(e.cniCode, 999, "the plugin's own error code");
  t.match(e.msg, /too small to allocate from/, "the plugin's own message");
  t.match(e.message, /plugin type="ptp" name="wkt" failed \(add\) \(code 999\)/);
});

t.test('a plugin that is not installed is a distinct error', async (t) => {
  const f = await netFixture(t);
  const att = attachment(f);
  const net = network(f, ptpPlugins(f, f.subnet, [{ type: 'no-such-plugin' }]));
  const err = await cniAdd(net, att, f.chain).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof KubeletError);
  t.equal((err as KubeletError).code, 'CNI_PLUGIN_NOT_FOUND');
  // ptp's half of the attachment is undone with a DEL of the part of the chain that exists.
  await cniDel(network(f), att, undefined, f.chain);
});

t.test('each plugin gets the CNI environment, injected fields and the previous result', async (t) => {
  const f = await netFixture(t);
  await installRecorder(f);
  const recordTo = join(f.dir, 'record.jsonl');
  const net = network(f, ptpPlugins(f, f.subnet, [{ type: 'tuning', sysctl: {} }, { type: 'recorder', recordTo, capabilities: { portMappings: true } }]));
  const att = attachment(f);

  const result = await cniAdd(net, att, f.chain);
  await cniDel(net, att, result, f.chain);
  const calls = await readRecord(recordTo);
  t.equal(calls.length, 2, 'called once for ADD and once for DEL');
  const [add, del] = calls as [(typeof calls)[0], (typeof calls)[0]];
  t.same(add.env, {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: att.containerId,
    CNI_NETNS: att.netnsPath,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=${att.containerId};K8S_POD_UID=1234`,
    CNI_PATH: `${f.binDir}:/usr/lib/cni`,
  });
  t.equal(add.conf.name, 'wkt', 'network name injected');
  t.equal(add.conf.cniVersion, '1.0.0', 'cniVersion injected');
  t.notOk('capabilities' in add.conf, 'capabilities are not passed to the plugin');
  const prev = add.conf.prevResult as { ips: { address: string }[] };
  t.equal(prev.ips[0]?.address, result.ips?.[0]?.address, "ADD passes the previous plugin's result (ptp's, through tuning)");
  t.equal(del.env.CNI_COMMAND, 'DEL');
  t.same(del.conf.prevResult, result, 'DEL passes the final ADD result');
});

t.test('the first configuration file by name is the network', async (t) => {
  const f = await netFixture(t);
  const list = (name: string) => JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type: 'ptp' }] });
  await writeFile(join(f.confDir, '20-second.conflist'), list('second'));
  await writeFile(join(f.confDir, '10-first.conflist'), list('first'));
  await writeFile(join(f.confDir, '00-notes.txt'), 'not a config');
  t.equal((await loadNetworkConfig(f.confDir)).name, 'first');

  const empty = join(f.dir, 'empty.d');
  await run(['mkdir', '-p', empty]);
  await t.rejects(loadNetworkConfig(empty), { code: 'CNI_CONFIG_MISSING' });
  await writeFile(join(empty, '10-bad.conflist'), '{"cniVersion":"1.0.0","name":"x","plugins":[]}');
  await t.rejects(loadNetworkConfig(empty), { code: 'CNI_CONFIG_INVALID' });
});
