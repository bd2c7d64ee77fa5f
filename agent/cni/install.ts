// Installing weft-cni on a node, as the agent's DaemonSet does at start: put the executable in
// the node's CNI bin dir, chain an entry into the node's primary CNI configuration, keep it
// chained when the primary CNI rewrites its file, and take both away again on uninstall.
import { createHash } from 'node:crypto';
import { createReadStream, watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { WEFT_CNI_TYPE } from '../../api/cni.ts';
import type { WeftCniSettings } from '../../api/cni.ts';
import { copyFileAtomic, writeFileAtomic } from './atomic-write.ts';
import { chainIntoConflist, conflistFromConf, isChained, unchainFromConflist, weftCniEntry } from './conflist.ts';
import { CodedError } from '../../api/coded-error.ts';
import { UNINSTALLED_PREFIX, UNINSTALLED_STUB } from './uninstalled-stub.ts';

/** A conflist's `type` names the executable, so the binary is called exactly that. */
export const PLUGIN_BINARY_NAME = WEFT_CNI_TYPE;

/** The extensions libcni (and so containerd and CRI-O) load from a conf dir, in its order. */
const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];

export interface ApiCredentials {
  /** PEM bundle of the API server's CA (the agent's own service-account ca.crt). */
  caPem: string;
  /** A token allowed to get pods and namespaces. */
  token: string;
}

export interface CniInstallOptions {
  /** The built single executable (dist/weft-cni, or where the image keeps it). */
  binarySource: string;
  /** The node's CNI bin dir, e.g. /opt/cni/bin. */
  binDir: string;
  /** The node's CNI conf dir, e.g. /etc/cni/net.d. */
  confDir: string;
  /** What the chained entry tells the plugin. */
  settings: WeftCniSettings;
  /** Written to settings.kubernetes.caFile / tokenFile when both are given. */
  credentials?: ApiCredentials;
}

export type ChainState =
  | { state: 'chained'; file: string; changed: boolean }
  /** No primary CNI configuration yet: the primary CNI has not been installed on this node. */
  | { state: 'waiting'; reason: string }
  /** The bin dir holds the tear-down stub: Weft was uninstalled from this node, nothing is chained. */
  | { state: 'uninstalled'; reason: string };

export interface InstallResult {
  binary: string;
  binaryChanged: boolean;
  chain: ChainState;
}

export class CniInstallError extends CodedError<'CONF_CHANGING'> {
  override readonly name = 'CniInstallError';
}

export async function installCniPlugin(opts: CniInstallOptions): Promise<InstallResult> {
  if (opts.credentials !== undefined && opts.settings.kubernetes !== null) {
    await writeApiCredentials(opts.settings.kubernetes, opts.credentials);
  }
  await mkdir(opts.binDir, { recursive: true, mode: 0o755 });
  const binary = join(opts.binDir, PLUGIN_BINARY_NAME);
  const binaryChanged = !(await sameContent(opts.binarySource, binary));
  if (binaryChanged) await copyFileAtomic(opts.binarySource, binary, 0o755);
  return { binary, binaryChanged, chain: await ensureChained(opts.confDir, opts.settings, opts.binDir) };
}

/** Writes the files the plugin's API fallback reads; the token readable by root only. */
export async function writeApiCredentials(paths: { caFile: string; tokenFile: string }, creds: ApiCredentials): Promise<void> {
  for (const file of [paths.caFile, paths.tokenFile]) await mkdir(dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(paths.caFile, creds.caPem, 0o644);
  await writeFileAtomic(paths.tokenFile, creds.token, 0o600);
}

/**
 * The configuration a runtime uses: the first file, by name, with a CNI extension (libcni's
 * ConfFiles order, which containerd and CRI-O follow).
 */
export async function findPrimaryConfig(confDir: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  // Like libcni: any regular file whose extension is a CNI one, dotfiles included (our own
  // temporary files end in ".weft-tmp-<hex>", which is no CNI extension).
  const candidates = names.filter(hasConfExtension).sort(byBytes);
  for (const name of candidates) {
    if ((await stat(join(confDir, name)).catch(() => null))?.isFile()) return join(confDir, name);
  }
  return null;
}

/** Whether the bin dir holds the tear-down stub (only its first bytes are read: the plugin is large). */
export async function isUninstalled(binDir: string): Promise<boolean> {
  const fh = await open(join(binDir, PLUGIN_BINARY_NAME), 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (fh === null) return false;
  try {
    const head = Buffer.alloc(UNINSTALLED_PREFIX.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead).toString('utf8') === UNINSTALLED_PREFIX;
  } finally {
    await fh.close();
  }
}

/**
 * Level-triggered: makes the primary configuration chain weft-cni; a no-op when it already does.
 * Never once the bin dir holds the tear-down stub: an agent process still running on the node
 * (the one an upgrade replaced, waiting for its pod's deletion) must not put back the entry that
 * another process has just taken out on uninstall. Checked again right before each write, which
 * leaves a window of one rename; uninstallCniPlugin closes it by looking once more afterwards.
 */
export async function ensureChained(confDir: string, settings: WeftCniSettings, binDir: string): Promise<ChainState> {
  const entry = weftCniEntry(settings);
  const uninstalled = async (): Promise<ChainState | null> =>
    (await isUninstalled(binDir)) ? { state: 'uninstalled', reason: `${join(binDir, PLUGIN_BINARY_NAME)} is the tear-down stub: Weft was uninstalled from this node` } : null;
  // Another component may rewrite the file between our read and our rename; if the file moved
  // under us, start over from what it is now rather than overwrite the other writer.
  for (let attempt = 0; attempt < 5; attempt++) {
    const stub = await uninstalled();
    if (stub) return stub;
    const primary = await findPrimaryConfig(confDir);
    if (primary === null) return { state: 'waiting', reason: `no CNI configuration in ${confDir} yet` };
    const text = await readFile(primary, 'utf8');
    if (isList(text)) {
      const edit = chainIntoConflist(text, entry);
      if (!edit.changed) return { state: 'chained', file: primary, changed: false };
      if ((await readFile(primary, 'utf8').catch(() => null)) !== text) continue;
      const late = await uninstalled();
      if (late) return late;
      await writeFileAtomic(primary, edit.text, (await stat(primary)).mode & 0o7777);
      return { state: 'chained', file: primary, changed: true };
    }
    // A single-plugin .conf: replace it with the equivalent conflist plus weft-cni. The new name
    // sorts right after the old one, so it stays the primary once the .conf is gone.
    const target = primary.replace(/\.(conf|json)$/, '.conflist');
    const late = await uninstalled();
    if (late) return late;
    await writeFileAtomic(target, conflistFromConf(text, entry), 0o644);
    await unlink(primary);
    return { state: 'chained', file: target, changed: true };
  }
  throw new CniInstallError('CONF_CHANGING', `the CNI configuration in ${confDir} kept changing while weft-cni was being chained`);
}

export interface UninstallOptions {
  binDir: string;
  confDir: string;
  /** When given, the API credential files it names are removed too. */
  settings?: WeftCniSettings;
  /**
   * How long after taking the entry out to look once more (default 1 s): a chain watcher of
   * another agent process that checked for the stub just before it was written may still
   * complete one write (ensureChained says why).
   */
  settleMs?: number;
}

export interface UninstallResult {
  unchained: string[];
  /** Files that had weft-cni back in them when looked at again after settleMs (and were fixed). */
  rechained: string[];
  /**
   * What is in the bin dir now: `stub` (the plugin was replaced by UNINSTALLED_STUB, which lets
   * pods set up through it be torn down) or `absent` (there was none: no pod can need it).
   */
  binary: 'stub' | 'absent';
}

/**
 * Takes weft-cni off the node: first replaces the executable with the tear-down stub
 * (uninstalled-stub.ts), then removes the entry from every configuration that chains it
 * (byte-exact inverse of chaining), then looks once more after settleMs. In that order because
 * the stub is what tells every other agent process's chain watcher to stop (ensureChained), and
 * because a pod set up in between, through the entry not yet removed, gets the stub, which
 * passes the chain's result through: it starts unmeshed, it is never stuck.
 */
export async function uninstallCniPlugin(opts: UninstallOptions): Promise<UninstallResult> {
  const binaryPath = join(opts.binDir, PLUGIN_BINARY_NAME);
  const present = await stat(binaryPath).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  if (present) await writeFileAtomic(binaryPath, UNINSTALLED_STUB, 0o755);
  const unchained = await unchainAll(opts.confDir);
  await sleep(opts.settleMs ?? 1000);
  const rechained = await unchainAll(opts.confDir);
  const k = opts.settings?.kubernetes;
  if (k) for (const f of [k.tokenFile, k.caFile]) await unlink(f).catch(() => undefined);
  return { unchained, rechained, binary: present ? 'stub' : 'absent' };
}

async function unchainAll(confDir: string): Promise<string[]> {
  const unchained: string[] = [];
  const names = await readdir(confDir).catch(() => [] as string[]);
  for (const name of names.filter(hasConfExtension).sort(byBytes)) {
    const file = join(confDir, name);
    const text = await readFile(file, 'utf8').catch(() => null);
    if (text === null || !isChained(text)) continue;
    await writeFileAtomic(file, unchainFromConflist(text).text, (await stat(file)).mode & 0o7777);
    unchained.push(file);
  }
  return unchained;
}

export interface ChainWatcherOptions {
  confDir: string;
  /** Where the plugin is: the watcher chains nothing while the tear-down stub is there. */
  binDir: string;
  settings: WeftCniSettings;
  /** Changes closer together than this are handled once (a rewrite is often several events). */
  debounceMs?: number;
  /** Full re-check interval, in case an inotify event is missed (e.g. the dir was replaced). */
  resyncMs?: number;
  /** Every outcome, for the agent's log and readiness. */
  onResult?: (result: ChainState | Error) => void;
}

export interface ChainWatcher {
  /** Resolves after any re-chaining in progress has finished. */
  close(): Promise<void>;
}

/**
 * Keeps weft-cni chained: a primary CNI that rewrites its configuration (at start, on upgrade)
 * drops our entry, and pods created after that would start without redirection.
 */
export function watchChain(opts: ChainWatcherOptions): ChainWatcher {
  const debounceMs = opts.debounceMs ?? 250;
  let watcher: FSWatcher | null = null;
  let debounce: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let closed = false;

  const run = (): void => {
    if (closed) return;
    if (running !== null) {
      again = true;
      return;
    }
    running = ensureChained(opts.confDir, opts.settings, opts.binDir)
      .then((r) => opts.onResult?.(r), (err: unknown) => opts.onResult?.(err as Error))
      .finally(() => {
        running = null;
        if (again) {
          again = false;
          run();
        }
      });
  };
  const schedule = (): void => {
    if (closed) return;
    if (debounce !== null) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = null;
      run();
    }, debounceMs);
  };
  const startWatching = (): void => {
    if (watcher !== null || closed) return;
    try {
      watcher = watch(opts.confDir, (_event, name) => {
        if (name !== null && name.includes('.weft-tmp-')) return; // our own writes in flight
        schedule();
      });
      watcher.on('error', () => {
        watcher?.close();
        watcher = null; // the resync timer re-creates it
      });
    } catch {
      watcher = null; // the dir does not exist yet
    }
  };

  startWatching();
  const resync = setInterval(() => {
    startWatching();
    run();
  }, opts.resyncMs ?? 30_000);
  resync.unref();
  run();

  return {
    async close() {
      closed = true;
      clearInterval(resync);
      if (debounce !== null) clearTimeout(debounce);
      watcher?.close();
      watcher = null;
      while (running !== null) await running;
    },
  };
}

function isList(text: string): boolean {
  try {
    const doc = JSON.parse(text) as { plugins?: unknown } | null;
    return typeof doc === 'object' && doc !== null && Array.isArray(doc.plugins);
  } catch {
    return true; // let chainIntoConflist report what is wrong with it
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b).catch(() => null)]);
  if (sb === null || sa.size !== sb.size) return false;
  const [ha, hb] = await Promise.all([sha256(a), sha256(b)]);
  return ha === hb;
}

function sha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

function hasConfExtension(name: string): boolean {
  return CONF_EXTENSIONS.some((e) => name.endsWith(e));
}

/** Go's sort.Strings order (bytes), which libcni uses; not the locale's. */
function byBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
