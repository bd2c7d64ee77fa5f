// The plugin's log: JSON lines appended to the file named in its configuration, or stderr (which
// the runtime captures) when none is named. Never stdout: stdout carries the CNI result. Logging
// must never fail a pod event, so every I/O error here falls back to stderr or is dropped.
// Secrets never reach this module: callers pass identities and outcomes, never request headers
// or the contents of the token file.
import { closeSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CniLogLevel } from '../api/cni.ts';

const LEVELS: Record<CniLogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A log file above this size is moved to `<file>.1` (replacing the previous one) at open. */
const ROTATE_BYTES = 10 * 1024 * 1024;

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Fields added to every later line (command, container, pod). */
  bind(fields: LogFields): void;
  close(): void;
}

export function createLogger(opts: { file: string | null; level: CniLogLevel }): Logger {
  const threshold = LEVELS[opts.level];
  const bound: LogFields = { pid: process.pid };
  let fd: number | null = null;
  let opened = false;

  const open = (): number => {
    if (opened) return fd ?? 2;
    opened = true;
    if (opts.file === null) return 2;
    try {
      mkdirSync(dirname(opts.file), { recursive: true, mode: 0o755 });
      rotateIfLarge(opts.file);
      fd = openSync(opts.file, 'a', 0o640);
    } catch (err) {
      writeLine(2, { time: new Date().toISOString(), level: 'warn', msg: `cannot open log file ${opts.file}: ${(err as Error).message}` });
    }
    return fd ?? 2;
  };

  const log = (level: CniLogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < threshold) return;
    writeLine(open(), { time: new Date().toISOString(), level, msg, ...bound, ...fields });
  };

  return {
    debug: (msg, fields) => log('debug', msg, fields),
    info: (msg, fields) => log('info', msg, fields),
    warn: (msg, fields) => log('warn', msg, fields),
    error: (msg, fields) => log('error', msg, fields),
    bind: (fields) => Object.assign(bound, fields),
    close: () => {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

function writeLine(fd: number, record: Record<string, unknown>): void {
  try {
    // One write(2) per line on an O_APPEND descriptor: lines from concurrent plugin processes
    // do not interleave.
    writeSync(fd, JSON.stringify(record) + '\n');
  } catch {
    // Nowhere left to report it; the pod event matters more than its log line.
  }
}

function rotateIfLarge(file: string): void {
  try {
    if (statSync(file).size > ROTATE_BYTES) renameSync(file, `${file}.1`);
  } catch {
    // Missing file (first run) or a concurrent rotation: both fine.
  }
}
