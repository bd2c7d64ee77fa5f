// The agent's side of the CNI plugin on this node: the socket the plugin asks (the newest agent
// process takes a live one over), the plugin binary and its entry in the node's CNI chain (kept
// there by a watcher), and the plugin's copy of the API credentials, refreshed as the kubelet
// rotates the agent's projected token.
import { readFile } from 'node:fs/promises';
import { createCniServer, type CniServer } from './cni/server.ts';
import { installCniPlugin, watchChain, writeApiCredentials, type ChainWatcher } from './cni/install.ts';
import { cniSettings, type AgentConfig } from './config.ts';
import type { NodeEnroller } from './enrol/enroller.ts';
import type { Log } from './log.ts';

const CREDENTIAL_REFRESH_MS = 5 * 60_000;

export class NodeCni {
  readonly #server: CniServer;
  readonly watcher: ChainWatcher;
  readonly #refresh: NodeJS.Timeout | undefined;

  private constructor(server: CniServer, watcher: ChainWatcher, refresh: NodeJS.Timeout | undefined) {
    this.#server = server;
    this.watcher = watcher;
    this.#refresh = refresh;
  }

  static async start(cfg: AgentConfig, enroller: NodeEnroller, log: Log): Promise<NodeCni> {
    const settings = cniSettings(cfg);
    const server = createCniServer({
      socketPath: settings.agentSocket,
      enroller,
      takeOver: true,
      log: { info: (m, f) => log('info', m, f), warn: (m, f) => log('warn', m, f), error: (m, f) => log('error', m, f) },
    });
    await server.listen();
    const readCredentials = async () => ({ caPem: await readFile(cfg.cni.kubeCaSource, 'utf8'), token: (await readFile(cfg.tokenFile, 'utf8')).trim() });
    const credentials = cfg.cni.kubernetes ? await readCredentials() : undefined;
    const installed = await installCniPlugin({ binarySource: cfg.cni.binarySource, binDir: cfg.cni.binDir, confDir: cfg.cni.confDir, settings, ...(credentials ? { credentials } : {}) });
    log('info', 'CNI plugin installed', { binary: installed.binary, chain: installed.chain });
    const kube = cfg.cni.kubernetes;
    const refresh = kube
      ? setInterval(() => {
          readCredentials()
            .then((c) => writeApiCredentials(kube, c))
            .catch((e: unknown) => log('warn', 'refreshing the CNI plugin credentials failed', { error: (e as Error).message }));
        }, CREDENTIAL_REFRESH_MS)
      : undefined;
    refresh?.unref();
    const watcher = watchChain({ confDir: cfg.cni.confDir, binDir: cfg.cni.binDir, settings, onResult: (r) => r instanceof Error && log('warn', 'CNI chain check failed', { error: r.message }) });
    return new NodeCni(server, watcher, refresh);
  }

  /** Stops refreshing; the plugin's requests in progress get graceMs; the chain is no longer watched. */
  async close(graceMs: number): Promise<void> {
    clearInterval(this.#refresh);
    await Promise.all([this.#server.close({ graceMs }), this.watcher.close()]);
  }
}
