// Taking Weft off the node (`--uninstall`, or a stop after `helm uninstall`, kube/stop-decision.ts).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { uninstallCniPlugin } from './cni/install.ts';
import { CHECKPOINT_FILE, ENROLMENTS_FILE, cniSettings, type AgentConfig } from './config.ts';
import { log } from './log.ts';
import { Redirector } from './redirect/nftables.ts';

export interface UninstallOutcome {
  /** CNI configuration files weft-cni was taken out of. */
  unchained: string[];
  /** Files another agent process's chain watcher had put weft-cni back into; taken out again. */
  rechained: string[];
  /** The plugin executable: replaced by its tear-down stub, or there was none. */
  binary: 'stub' | 'absent' | 'unknown';
  tableRemoved: boolean;
  /** What failed; each step is tried all the same. */
  errors: string[];
}

/**
 * The plugin replaced by its tear-down stub and the CNI entry taken out (cni/install.ts
 * uninstallCniPlugin says in which order, and why): pods created from then on start without
 * weft-cni, unmeshed, with their networking, and pods created before can still be deleted. Then
 * the `inet weft` table: meshed pods' traffic flows directly. Then the node state a later install must not restore
 * (checkpoint, enrolments, the plugin's copy of the token).
 */
export async function uninstall(cfg: AgentConfig, redirector: Redirector = new Redirector()): Promise<UninstallOutcome> {
  const out: UninstallOutcome = { unchained: [], rechained: [], binary: 'unknown', tableRemoved: false, errors: [] };
  const failed = (what: string) => (e: unknown) => void out.errors.push(`${what}: ${(e as Error).message}`);
  await uninstallCniPlugin({ binDir: cfg.cni.binDir, confDir: cfg.cni.confDir, settings: cniSettings(cfg) }).then(
    (r) => Object.assign(out, { unchained: r.unchained, rechained: r.rechained, binary: r.binary }),
    failed('removing weft-cni'),
  );
  await redirector.remove().then(() => (out.tableRemoved = true), failed('removing the nftables table'));
  for (const f of [CHECKPOINT_FILE, ENROLMENTS_FILE]) await rm(join(cfg.stateDir, f), { force: true }).catch(failed(`removing ${f}`));
  log(out.errors.length === 0 ? 'info' : 'error', 'uninstalled: Weft is off this node', { ...out });
  return out;
}
