// The agent's structured log: one JSON line per event on stdout (api/log.ts).
import { createLogger } from '../api/log.ts';

const logger = createLogger({}, { write: (line) => void process.stdout.write(line) });

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export const log: Log = (level, msg, fields = {}) => {
  logger[level](msg, fields);
};
