// How the agent process answers SIGTERM and SIGINT. The handlers are in place before the agent
// starts: a signal that arrives while it is still starting (a surge pod created just before
// `helm uninstall`, a pod deleted at once) is kept and answered with the full stop — drain, or
// take Weft off the node — as soon as the agent has started. Node's default would end the process
// on the spot, and an agent that had already chained its CNI plugin would leave the node with a
// plugin and no agent behind it. A second signal while starting ends the process at once (an
// operator's second Ctrl-C); one after the start is already being answered.
import type { EventEmitter } from 'node:events';

export type Stop = (signal: string) => Promise<void>;

export interface SignalOptions {
  /** Where the signals come from; the process by default. */
  source?: EventEmitter;
  exit?: (code: number) => void;
  onStartFailed?: (err: unknown) => void;
}

export function stopOnSignals(started: Promise<Stop>, o: SignalOptions = {}): void {
  const source = o.source ?? process;
  const exit = o.exit ?? ((code: number) => process.exit(code));
  let stop: Stop | undefined;
  let pending: string | undefined;
  let stopping = false;
  const answer = (signal: string): void => {
    if (stopping || !stop) return;
    stopping = true;
    stop(signal).then(
      () => exit(0),
      () => exit(1),
    );
  };
  for (const signal of ['SIGTERM', 'SIGINT']) {
    source.on(signal, () => {
      if (stop) return answer(signal);
      if (pending) return exit(1);
      pending = signal;
    });
  }
  started.then(
    (s) => {
      stop = s;
      if (pending) answer(pending);
    },
    (err: unknown) => {
      o.onStartFailed?.(err);
      exit(1);
    },
  );
}
