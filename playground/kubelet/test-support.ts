// Fixtures shared by this folder's tests: a "node" and a "pod" network namespace with unique names,
// a scratch directory, a CNI configuration over Debian's ptp + host-local, and a recording CNI
// plugin (a real executable) that logs what it was given. Everything is removed in teardown.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { ChainOptions } from './cni-chain.ts';
import { createNetns, deleteNetns, netnsPath } from './netns.ts';

export interface NetFixture {
  suffix: string;
  dir: string;
  nodeNs: string;
  podNs: string;
  subnet: string;
  binDir: string;
  confDir: string;
  /** Runs plugins in the node namespace, where a kubelet would run them. */
  chain: ChainOptions;
}

export async function netFixture(t: Test): Promise<NetFixture> {
  const suffix = randomBytes(4).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), `wkt-${suffix}-`));
  const nodeNs = `wkt-node-${suffix}`;
  const podNs = `wkt-pod-${suffix}`;
  t.teardown(async () => {
    await deleteNetns(podNs).catch(() => {});
    await deleteNetns(nodeNs).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  await createNetns(nodeNs);
  await createNetns(podNs);
  const binDir = join(dir, 'bin');
  const confDir = join(dir, 'net.d');
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir, { recursive: true });
  return {
    suffix,
    dir,
    nodeNs,
    podNs,
    subnet: `10.251.${randomBytes(1)[0]}.0/24`,
    binDir,
    confDir,
    chain: { binDirs: [binDir, '/usr/lib/cni'], runtimeNetnsPath: netnsPath(nodeNs), timeoutMs: 20_000 },
  };
}

/** The plugin list of a ptp + host-local network, with `extra` plugins chained after it. */
export function ptpPlugins(f: NetFixture, subnet = f.subnet, extra: Record<string, unknown>[] = []): Record<string, unknown>[] {
  return [
    { type: 'ptp', ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(f.dir, 'ipam') } },
    ...extra,
  ];
}

export async function writeConflist(f: NetFixture, plugins: Record<string, unknown>[], file = '10-wkt.conflist'): Promise<void> {
  await writeFile(join(f.confDir, file), JSON.stringify({ cniVersion: '1.0.0', name: 'wkt', plugins }));
}

export interface RecordedCall {
  conf: Record<string, unknown>;
  env: Record<string, string>;
}

/**
 * Installs the "recorder" plugin in the fixture's bin directory: it appends its configuration and
 * CNI_* environment to `recordTo` (given in its config) and passes prevResult through on ADD.
 */
export async function installRecorder(f: NetFixture): Promise<void> {
  const script = `#!${process.execPath}
const fs = require('node:fs');
const conf = JSON.parse(fs.readFileSync(0, 'utf8'));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('CNI_')));
fs.appendFileSync(conf.recordTo, JSON.stringify({ conf, env }) + '\\n');
if (env.CNI_COMMAND === 'ADD') process.stdout.write(JSON.stringify(conf.prevResult));
`;
  await writeFile(join(f.binDir, 'recorder.cjs'), script);
  await writeFile(join(f.binDir, 'recorder'), `#!/bin/sh\nexec ${process.execPath} ${join(f.binDir, 'recorder.cjs')}\n`);
  await chmod(join(f.binDir, 'recorder'), 0o755);
}

export async function readRecord(path: string): Promise<RecordedCall[]> {
  try {
    return (await readFile(path, 'utf8'))
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as RecordedCall);
  } catch {
    return [];
  }
}
