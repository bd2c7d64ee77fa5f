// Structured logging for the simulated kubelet: one JSON object per line on stdout, so that the
// supervisor's log file can be read by people (jq) and by tests alike. Values are never secrets:
// callers log names, UIDs, codes and messages, never environment values or credentials.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. the pod a worker owns). */
  child(fields: LogFields): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; stdout by default. */
  write?: (line: string) => void;
}

export function createLogger(base: LogFields = {}, opts: LoggerOptions = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => void process.stdout.write(line));
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < min) return;
    const entry = { ts: new Date().toISOString(), level, msg, ...base, ...normalize(fields) };
    write(`${JSON.stringify(entry)}\n`);
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger({ ...base, ...fields }, opts),
  };
}

/** A logger that drops everything; for library callers that did not pass one. */
export const silentLogger: Logger = createLogger({}, { write: () => {} });

// Errors do not serialize with JSON.stringify (their fields are not enumerable): keep the parts a
// reader needs.
function normalize(fields: LogFields | undefined): LogFields | undefined {
  if (!fields) return fields;
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? describeError(v) : v;
  }
  return out;
}

function describeError(err: Error): Record<string, unknown> {
  const code = (err as { code?: unknown }).code;
  return { message: err.message, ...(code !== undefined ? { code } : {}) };
}
