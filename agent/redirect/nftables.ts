// Applies the redirection rules (rules.ts) with the nft tool, in the agent's network namespace
// (or another one, for tests). Each change is one nft transaction: all or nothing.
import { execFile } from 'node:child_process';
import { CodedError } from '../../api/coded-error.ts';
import { renderAdd, renderRemove, renderServices, renderTable, TABLE, type EnrolledPod, type ServiceAddress } from './rules.ts';

export class NftError extends CodedError<'NFT_FAILED'> {
  override readonly name = 'NftError';
}

export interface RedirectorOptions {
  /** Run nft inside this named network namespace instead of the current one. */
  netns?: string;
  /** Capture what the node itself sends to enrolled pods (rules.ts); false trusts the node. */
  captureNode?: boolean;
}

export class Redirector {
  readonly #argv: string[];
  readonly #captureNode: boolean;
  #services: ServiceAddress[] = [];
  #installed = false;

  constructor(opts: RedirectorOptions = {}) {
    this.#argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, 'nft'] : ['nft'];
    this.#captureNode = opts.captureNode ?? true;
  }

  #nft(args: string[], input?: string): Promise<string> {
    const [cmd, ...pre] = this.#argv;
    return new Promise((resolve, reject) => {
      const child = execFile(cmd as string, [...pre, ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
        if (err) reject(new NftError('NFT_FAILED', `nft ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
        else resolve(String(stdout));
      });
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  /** Installs (or replaces) the whole table with exactly these pods enrolled. The table's shape
   * follows the options: a restart with another `captureNode` takes effect here. */
  async sync(pods: EnrolledPod[]): Promise<void> {
    await this.#nft(['-f', '-'], renderTable(pods, { captureNode: this.#captureNode, services: this.#services }));
    this.#installed = true;
  }

  /**
   * The Service addresses to capture from the node (rules.ts, svc4), replaced in one transaction.
   * Before the table is installed they are only kept, so that the first sync() has them: a
   * (re)started agent never has a moment when they are not captured.
   */
  async captureServices(services: ServiceAddress[]): Promise<void> {
    const rendered = renderServices(services); // checks them before anything is kept
    this.#services = services;
    if (this.#installed && this.#captureNode) await this.#nft(['-f', '-'], rendered);
  }

  async enrol(pod: EnrolledPod): Promise<void> {
    await this.#nft(['-f', '-'], renderAdd(pod));
  }

  async release(pod: EnrolledPod): Promise<void> {
    await this.#nft(['-f', '-'], renderRemove(pod));
  }

  /** True when the pod's interface and addresses are in the sets (for CNI CHECK). */
  async isEnrolled(pod: EnrolledPod): Promise<boolean> {
    const sets = await this.#listSets();
    return sets.ifaces.has(pod.hostInterface) && pod.ips.filter((ip) => !ip.includes(':')).every((ip) => sets.ips.has(ip));
  }

  async #listSets(): Promise<{ ifaces: Set<string>; ips: Set<string> }> {
    const out = JSON.parse(await this.#nft(['-j', 'list', 'table', 'inet', TABLE])) as { nftables: { set?: { name: string; elem?: unknown[] } }[] };
    const get = (name: string) => new Set((out.nftables.find((o) => o.set?.name === name)?.set?.elem ?? []).map(String));
    return { ifaces: get('pod_ifaces'), ips: get('pod_ips4') };
  }

  /** Removes the table: traffic of enrolled pods flows unmeshed again (uninstall only). */
  async remove(): Promise<void> {
    await this.#nft(['-f', '-'], `table inet ${TABLE}\ndelete table inet ${TABLE}\n`);
    this.#installed = false;
  }
}
