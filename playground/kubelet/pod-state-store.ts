// What the kubelet must remember about a pod across its own restarts, on disk under the node's
// directory: which namespace and sandbox it made, the network configuration and final CNI result
// (DEL needs the very same), and which processes it started (so a restarted kubelet adopts them
// instead of starting duplicates). Container logs live beside it, laid out like /var/log/pods.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Attachment } from './cni-chain.ts';
import type { NetworkConfigList } from './cni-config.ts';
import type { CniResult } from './cni-result.ts';
import { KubeletError } from './errors.ts';

export interface PodRef {
  uid: string;
  namespace: string;
  name: string;
}

export interface PodRecord extends PodRef {
  /** The pod's network namespace name; null for hostNetwork pods. */
  netns: string | null;
  /** CNI_CONTAINERID of the sandbox. */
  sandboxId: string;
  createdAt: string;
}

export interface NetworkRecord {
  config: NetworkConfigList;
  attachment: Attachment;
  /** Absent while ADD has not completed (DEL then runs without prevResult). */
  result?: CniResult;
}

export interface ProcessRecord {
  pid: number;
  /** Process start time in clock ticks since boot (/proc/<pid>/stat field 22): guards against PID reuse. */
  startTicks: number;
  containerID: string;
  startedAt: string;
  restartCount: number;
}

const UID = /^[a-zA-Z0-9-]{1,64}$/;

export class PodStateStore {
  readonly root: string;
  readonly logRoot: string;

  constructor(nodeDir: string) {
    this.root = join(nodeDir, 'kubelet', 'pods');
    this.logRoot = join(nodeDir, 'logs', 'pods');
  }

  podDir(uid: string): string {
    if (!UID.test(uid)) throw new KubeletError('STATE_CORRUPT', `refusing pod UID ${JSON.stringify(uid)}`);
    return join(this.root, uid);
  }

  /** UIDs of every pod with state on disk. */
  async listUIDs(): Promise<string[]> {
    try {
      return (await readdir(this.root)).filter((n) => UID.test(n));
    } catch {
      return [];
    }
  }

  readPod(uid: string): Promise<PodRecord | undefined> {
    return this.#read<PodRecord>(uid, 'pod.json');
  }

  writePod(rec: PodRecord): Promise<void> {
    return this.#write(rec.uid, 'pod.json', rec);
  }

  readNetwork(uid: string): Promise<NetworkRecord | undefined> {
    return this.#read<NetworkRecord>(uid, 'network.json');
  }

  writeNetwork(uid: string, rec: NetworkRecord): Promise<void> {
    return this.#write(uid, 'network.json', rec);
  }

  async clearNetwork(uid: string): Promise<void> {
    await rm(join(this.podDir(uid), 'network.json'), { force: true });
  }

  async readProcesses(uid: string): Promise<Record<string, ProcessRecord>> {
    return (await this.#read<Record<string, ProcessRecord>>(uid, 'processes.json')) ?? {};
  }

  writeProcesses(uid: string, recs: Record<string, ProcessRecord>): Promise<void> {
    return this.#write(uid, 'processes.json', recs);
  }

  /** Directory of one container's logs: <restartCount>.log files, like /var/log/pods/<ns>_<name>_<uid>/<container>. */
  containerLogDir(pod: PodRef, container: string): string {
    this.podDir(pod.uid);
    return join(this.logRoot, `${pod.namespace}_${pod.name}_${pod.uid}`, container);
  }

  containerLogPath(pod: PodRef, container: string, restartCount: number): string {
    return join(this.containerLogDir(pod, container), `${restartCount}.log`);
  }

  /** Forgets the pod: its state and its logs. */
  async remove(pod: PodRef): Promise<void> {
    await rm(this.podDir(pod.uid), { recursive: true, force: true });
    await rm(join(this.logRoot, `${pod.namespace}_${pod.name}_${pod.uid}`), { recursive: true, force: true });
  }

  async #read<T>(uid: string, file: string): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.podDir(uid), file), 'utf8');
    } catch {
      return undefined;
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new KubeletError('STATE_CORRUPT', `${uid}/${file} is not JSON`, { cause: err });
    }
  }

  // Write-then-rename, so that a kubelet killed mid-write leaves the old state, never half a file.
  async #write(uid: string, file: string, value: unknown): Promise<void> {
    const dir = this.podDir(uid);
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.${file}.tmp`);
    await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
    await rename(tmp, join(dir, file));
  }
}
