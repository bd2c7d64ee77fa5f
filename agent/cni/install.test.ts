import t from 'tap';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWeftCniSettings } from '../../api/cni.ts';
import type { WeftCniSettings } from '../../api/cni.ts';
import { isChained } from './conflist.ts';
import { ensureChained, installCniPlugin, uninstallCniPlugin, watchChain } from './install.ts';
import type { ChainState } from './install.ts';
import { UNINSTALLED_STUB } from './uninstalled-stub.ts';

const PRIMARY = `{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "plugins": [
    {
      "type": "ptp",
      "ipam": { "type": "host-local", "subnet": "10.244.1.0/24" }
    }
  ]
}
`;

interface Node {
  root: string;
  binDir: string;
  confDir: string;
  source: string;
  settings: WeftCniSettings;
}

async function makeNode(t: { teardown(fn: () => unknown): void }): Promise<Node> {
  const root = await mkdtemp(join(tmpdir(), 'weft-cni-install-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const binDir = join(root, 'opt/cni/bin');
  const confDir = join(root, 'etc/cni/net.d');
  await mkdir(confDir, { recursive: true });
  // Any executable proves the copy; the e2e test runs the real plugin from an installed path.
  const source = join(root, 'weft-cni.src');
  await writeFile(source, '#!/bin/sh\necho \'{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}\'\n');
  await chmod(source, 0o700);
  const settings = parseWeftCniSettings({
    agentSocket: '/var/run/weft/cni.sock',
    logFile: '/var/log/weft/cni.log',
    kubernetes: { apiServer: 'https://10.96.0.1:443', caFile: join(root, 'etc/weft/ca.crt'), tokenFile: join(root, 'etc/weft/token') },
  });
  return { root, binDir, confDir, source, settings };
}

async function until(cond: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const leftovers = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.includes('.weft-tmp-'));

t.test('install copies the executable and chains the primary conflist; a second install changes nothing', async (t) => {
  const n = await makeNode(t);
  const primary = join(n.confDir, '10-ptp.conflist');
  await writeFile(primary, PRIMARY);
  const first = await installCniPlugin({ ...n, binarySource: n.source, credentials: { caPem: 'CA PEM', token: 'secret-token' } });
  t.equal(first.binary, join(n.binDir, 'weft-cni'));
  t.ok(first.binaryChanged);
  t.same(first.chain, { state: 'chained', file: primary, changed: true });

  const installed = await stat(first.binary);
  t.equal(installed.mode & 0o777, 0o755, 'executable by the runtime');
  t.equal(await readFile(first.binary, 'utf8'), await readFile(n.source, 'utf8'));
  const plugins = (JSON.parse(await readFile(primary, 'utf8')) as { plugins: Record<string, unknown>[] }).plugins;
  t.same(plugins.map((p) => p.type), ['ptp', 'weft-cni']);
  t.equal(plugins[1]?.agentSocket, '/var/run/weft/cni.sock');
  t.same(plugins[1]?.kubernetes, n.settings.kubernetes, 'the entry names the credential files, not their contents');
  t.notMatch(await readFile(primary, 'utf8'), /secret-token/);
  t.equal(((await stat(join(n.root, 'etc/weft/token'))).mode & 0o777), 0o600, 'token readable by root only');
  t.equal(await readFile(join(n.root, 'etc/weft/token'), 'utf8'), 'secret-token');
  t.same(await leftovers(n.confDir), []);
  t.same(await leftovers(n.binDir), []);

  const before = { text: await readFile(primary, 'utf8'), mtime: (await stat(primary)).mtimeMs, ino: (await stat(first.binary)).ino };
  const second = await installCniPlugin({ ...n, binarySource: n.source });
  t.notOk(second.binaryChanged, 'same executable is not copied again');
  t.same(second.chain, { state: 'chained', file: primary, changed: false });
  t.equal(await readFile(primary, 'utf8'), before.text);
  t.equal((await stat(primary)).mtimeMs, before.mtime, 'conflist not rewritten');
  t.equal((await stat(first.binary)).ino, before.ino, 'binary not replaced');
});

t.test('an upgraded executable replaces the old one by rename (a running plugin keeps its inode)', async (t) => {
  const n = await makeNode(t);
  await writeFile(join(n.confDir, '10-ptp.conflist'), PRIMARY);
  const { binary } = await installCniPlugin({ ...n, binarySource: n.source });
  const oldIno = (await stat(binary)).ino;
  await writeFile(n.source, '#!/bin/sh\necho v2\n');
  const again = await installCniPlugin({ ...n, binarySource: n.source });
  t.ok(again.binaryChanged);
  t.not((await stat(binary)).ino, oldIno, 'new inode: the old file was never written in place');
  t.equal(await readFile(binary, 'utf8'), '#!/bin/sh\necho v2\n');
});

t.test('the primary configuration is the first CNI file by name; others are left alone', async (t) => {
  const n = await makeNode(t);
  await writeFile(join(n.confDir, '20-other.conflist'), PRIMARY);
  await writeFile(join(n.confDir, '10-main.conflist'), PRIMARY);
  await writeFile(join(n.confDir, '00-readme.txt'), 'not a CNI file');
  await mkdir(join(n.confDir, '05-a-directory.conflist'));
  const state = await ensureChained(n.confDir, n.settings, n.binDir);
  t.same(state, { state: 'chained', file: join(n.confDir, '10-main.conflist'), changed: true });
  t.equal(await readFile(join(n.confDir, '20-other.conflist'), 'utf8'), PRIMARY);

  // libcni does not skip dotfiles, and '.' sorts before digits: such a file is the primary.
  await writeFile(join(n.confDir, '.01-hidden.conflist'), PRIMARY);
  t.same(await ensureChained(n.confDir, n.settings, n.binDir), { state: 'chained', file: join(n.confDir, '.01-hidden.conflist'), changed: true });
});

t.test('a single-plugin .conf is converted to a conflist that chains weft-cni', async (t) => {
  const n = await makeNode(t);
  const conf = '{"cniVersion":"0.4.0","name":"flannel","type":"flannel","delegate":{"isDefaultGateway":true}}';
  await writeFile(join(n.confDir, '10-flannel.conf'), conf);
  const state = await ensureChained(n.confDir, n.settings, n.binDir);
  t.same(state, { state: 'chained', file: join(n.confDir, '10-flannel.conflist'), changed: true });
  t.same(await readdir(n.confDir), ['10-flannel.conflist'], 'the .conf is replaced, nothing else left behind');
  const list = JSON.parse(await readFile(join(n.confDir, '10-flannel.conflist'), 'utf8')) as { plugins: unknown[] };
  t.same(list.plugins[0], JSON.parse(conf));
  t.same((await ensureChained(n.confDir, n.settings, n.binDir)).state, 'chained');
});

t.test('the watcher chains a configuration that appears later and re-chains after a rewrite', async (t) => {
  const n = await makeNode(t);
  const results: (ChainState | Error)[] = [];
  const watcher = watchChain({ confDir: n.confDir, binDir: n.binDir, settings: n.settings, debounceMs: 50, onResult: (r) => results.push(r) });
  t.teardown(() => watcher.close());
  await until(async () => results.length > 0, 'first result');
  t.match(results[0], { state: 'waiting' }, 'no primary CNI yet');

  const primary = join(n.confDir, '10-ptp.conflist');
  await writeFile(primary, PRIMARY);
  await until(async () => isChained(await readFile(primary, 'utf8')), 'chained after the primary CNI wrote its file');

  // The primary CNI rewrites its file the usual way (temp file + rename), dropping our entry.
  await writeFile(join(n.confDir, 'tmp-write'), PRIMARY);
  await rename(join(n.confDir, 'tmp-write'), primary);
  await until(async () => isChained(await readFile(primary, 'utf8')), 're-chained after an atomic rewrite');

  // ...or writes it in place.
  await writeFile(primary, PRIMARY);
  await until(async () => isChained(await readFile(primary, 'utf8')), 're-chained after an in-place rewrite');
  const plugins = (JSON.parse(await readFile(primary, 'utf8')) as { plugins: { type: string }[] }).plugins;
  t.same(plugins.map((p) => p.type), ['ptp', 'weft-cni'], 'exactly one entry after all that');
  t.notOk(results.some((r) => r instanceof Error), 'no errors reported');

  // Once in place, our own write's events settle: no write loop.
  await new Promise((r) => setTimeout(r, 300));
  const mtime = (await stat(primary)).mtimeMs;
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await stat(primary)).mtimeMs, mtime, 'no further writes');
});

t.test('uninstall restores the primary conflist byte-for-byte and leaves a stub that only tears down', async (t) => {
  const n = await makeNode(t);
  const primary = join(n.confDir, '10-ptp.conflist');
  await writeFile(primary, PRIMARY);
  await installCniPlugin({ ...n, binarySource: n.source, credentials: { caPem: 'CA', token: 'tok' } });
  t.not(await readFile(primary, 'utf8'), PRIMARY);

  const result = await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settings: n.settings, settleMs: 10 });
  t.same(result, { unchained: [primary], rechained: [], binary: 'stub' });
  t.equal(await readFile(primary, 'utf8'), PRIMARY, 'original bytes');
  const stub = join(n.binDir, 'weft-cni');
  t.equal(await readFile(stub, 'utf8'), UNINSTALLED_STUB, 'the plugin is replaced by the stub');
  t.equal((await stat(stub)).mode & 0o777, 0o755);
  await t.rejects(stat(join(n.root, 'etc/weft/token')), { code: 'ENOENT' });
  t.same(await leftovers(n.confDir), []);

  // What a runtime replaying a pod's cached configuration gets from it.
  const call = (command: string, input = '{"cniVersion":"1.0.0","name":"x","type":"weft-cni"}') => spawnSync(stub, [], { env: { CNI_COMMAND: command }, input, encoding: 'utf8' });
  for (const command of ['DEL', 'GC', 'CHECK', 'STATUS']) t.match(call(command), { status: 0, stdout: '' }, `${command} succeeds: nothing of Weft is left to undo`);
  const version = call('VERSION');
  t.same(JSON.parse(version.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] }, 'VERSION');
  const add = call('ADD');
  t.equal(add.status, 1, 'ADD with no previous result (weft-cni alone) is refused');
  t.match(JSON.parse(add.stdout), { code: 7, msg: /uninstalled/ }, 'with a CNI error on stdout');

  t.same(await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settleMs: 10 }), { unchained: [], rechained: [], binary: 'stub' }, 'idempotent');
  const again = await installCniPlugin({ ...n, binarySource: n.source });
  t.ok(again.binaryChanged, 'a later install puts the plugin back over the stub');
  t.not(await readFile(stub, 'utf8'), UNINSTALLED_STUB);
});

t.test('uninstall on a node without the plugin leaves no stub', async (t) => {
  const n = await makeNode(t);
  t.same(await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settleMs: 10 }), { unchained: [], rechained: [], binary: 'absent' });
  await t.rejects(stat(join(n.binDir, 'weft-cni')), { code: 'ENOENT' });
});

t.test("the stub's ADD passes the chain's result through, as the CNI spec asks of a chained plugin", async (t) => {
  const n = await makeNode(t);
  await writeFile(join(n.confDir, '10-ptp.conflist'), PRIMARY);
  await installCniPlugin({ ...n, binarySource: n.source });
  await uninstallCniPlugin({ binDir: n.binDir, confDir: n.confDir, settleMs: 10 });
  const stub = join(n.binDir, 'weft-cni');
  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'veth1a2b', mac: '0a:58:0a:f4:01:01' }, { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/cni-1' }],
    ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
  };
  // Strings holding what the scanner must not be fooled by: braces, quotes, escapes, the key's name.
  const tricky = { note: 'a } b { "c", \\"prevResult\\": {}', name: 'prevResult', nested: { prevResult: { wrong: true } } };
  // Whichever sh a node has: dash (Debian, Ubuntu), bash (RHEL and derivatives), busybox.
  const shells = [['/bin/sh'], ['bash'], ...(spawnSync('busybox', ['true']).status === 0 ? [['busybox', 'sh']] : [])];
  const add = (shell: string[], input: string) => spawnSync(shell[0] ?? '', [...shell.slice(1), stub], { env: { CNI_COMMAND: 'ADD' }, input, encoding: 'utf8' });
  for (const shell of shells) {
    const sh = shell.join(' ');
    const conf = { cniVersion: '1.0.0', ...tricky, type: 'weft-cni', prevResult, runtimeConfig: {} };
    const compact = add(shell, JSON.stringify(conf));
    t.equal(compact.status, 0, `${sh}: ADD succeeds (${compact.stderr})`);
    t.same(JSON.parse(compact.stdout), prevResult, `${sh}: prints prevResult unchanged`);
    const pretty = add(shell, JSON.stringify({ ...conf, prevResult: { ...prevResult, cniVersion: undefined } }, null, 2));
    t.same(JSON.parse(pretty.stdout), prevResult, `${sh}: indented input, prevResult without its cniVersion: the netconf's is put in`);
    const last = add(shell, `{"cniVersion":"0.4.0","name":"n","type":"weft-cni","prevResult":{}}`);
    t.same(JSON.parse(last.stdout), { cniVersion: '0.4.0' }, `${sh}: an empty prevResult as the last member`);
    // A pod with many interfaces (multus, SR-IOV): kilobytes of prevResult, commas inside strings.
    const many = { ...prevResult, interfaces: Array.from({ length: 80 }, (_, i) => ({ name: `net${i}`, mac: '0a:58:0a:f4:01:01', sandbox: '/var/run/netns/cni-1,2' })) };
    const big = add(shell, JSON.stringify({ ...conf, prevResult: many }));
    t.same(JSON.parse(big.stdout), many, `${sh}: a ${JSON.stringify(many).length}-byte prevResult passes through whole`);
  }
});
