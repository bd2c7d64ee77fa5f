// One CNI call, start to finish: read the runtime's environment and stdin, run the command,
// print a result or a CNI error on stdout. Startup time is pod start-up latency, so only what
// every command needs is imported here (the Kubernetes API fallback is imported lazily).
import { readFileSync, writeSync } from 'node:fs';
import { add } from './commands/add.ts';
import { check } from './commands/check.ts';
import type { Command } from './commands/context.ts';
import { del } from './commands/del.ts';
import { gc } from './commands/gc.ts';
import { status } from './commands/status.ts';
import { versionResult } from './commands/version.ts';
import { readCniEnv } from './env.ts';
import type { CniCommand } from './env.ts';
import { CNI_ERROR, CniError, errorResult } from './errors.ts';
import { createLogger } from './log.ts';
import type { Logger } from './log.ts';
import { answerVersion, NEWEST_VERSION, parseNetConf, parseVersionRequest } from './netconf.ts';

const COMMANDS: Record<Exclude<CniCommand, 'VERSION'>, Command> = { ADD: add, DEL: del, CHECK: check, GC: gc, STATUS: status };

/**
 * Runs one CNI call; returns the process exit code. Never throws. `writeOut` receives stdout's one
 * line (the executable writes it to fd 1; tests and fuzz targets collect it in-process).
 */
export async function run(env: NodeJS.ProcessEnv, readStdin: () => string, writeOut: (line: string) => void = writeStdout): Promise<number> {
  const printJson = (value: unknown): void => writeOut(JSON.stringify(value) + '\n');
  let cniVersion = NEWEST_VERSION;
  let log: Logger | null = null;
  try {
    const cniEnv = readCniEnv(env);
    const stdin = readInput(readStdin);
    if (cniEnv.command === 'VERSION') {
      printJson(versionResult(parseVersionRequest(stdin)));
      return 0;
    }
    cniVersion = answerVersion(stdin);
    const conf = parseNetConf(stdin);
    log = createLogger({ file: conf.settings.logFile, level: conf.settings.logLevel });
    const pod = `${cniEnv.args.get('K8S_POD_NAMESPACE') ?? ''}/${cniEnv.args.get('K8S_POD_NAME') ?? ''}`;
    log.bind({ cmd: cniEnv.command, containerId: cniEnv.containerId || undefined, ifname: cniEnv.ifname || undefined, pod: pod === '/' ? undefined : pod });

    const started = performance.now();
    const result = await COMMANDS[cniEnv.command]({ env: cniEnv, conf, log });
    if (result !== undefined) printJson(result);
    // performance.now() counts from process start: the share Node's own start-up took is visible.
    log.debug('done', { commandMs: Math.round(performance.now() - started), processMs: Math.round(performance.now()) });
    return 0;
  } catch (err) {
    const cniErr = err instanceof CniError ? err : new CniError(CNI_ERROR.INTERNAL, (err as Error)?.message ?? String(err));
    // Stack traces go to the log only; stdout carries the spec's error object and nothing else.
    log?.error(cniErr.message, { code: cniErr.code, stack: cniErr.code === CNI_ERROR.INTERNAL ? (err as Error)?.stack : undefined });
    printJson(errorResult(cniErr, cniVersion));
    return 1;
  } finally {
    log?.close();
  }
}

function readInput(readStdin: () => string): string {
  try {
    return readStdin();
  } catch (err) {
    throw new CniError(CNI_ERROR.IO_FAILURE, `cannot read stdin: ${(err as Error).message}`);
  }
}

function writeStdout(line: string): void {
  // Synchronous: the process exits right after, and a pipe write must not be left queued. A
  // runtime may hand us a non-blocking pipe, hence the retry on EAGAIN.
  const data = Buffer.from(line);
  for (let off = 0; off < data.length; ) {
    try {
      off += writeSync(1, data, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

/** stdin, read whole; the runtime closes it after writing the configuration. */
export function readStdinSync(): string {
  return readFileSync(0, 'utf8');
}
