// Refusals are logged, but a flood of them must not become a flood of log lines (a second way to
// make one pod's garbage cost the controller): per error code, at most one line per interval,
// carrying how many were left out since the last one. The metrics count every refusal.
import type { LogFields, Logger } from '../../api/log.ts';

export function sampledRefusalLog(log: Logger, intervalMs = 1_000, now: () => number = () => performance.now()): (code: string, fields: LogFields) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (code, fields) => {
    const t = now();
    const seen = last.get(code);
    if (seen && t - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    log.warn('agent request refused', { ...fields, code, ...(seen?.suppressed ? { suppressedSinceLast: seen.suppressed } : {}) });
    last.set(code, { at: t, suppressed: 0 });
  };
}
