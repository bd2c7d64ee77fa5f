// One pass at a time, after a delay, for the status writers (policies' and routes'). Asking again
// while a pass is due keeps the sooner time, so a slow pass asked for by agents' ACKs never delays
// one a change asked for; asking while a pass runs runs another right after it, so nothing asked
// for during a pass is lost.
export class PassScheduler {
  readonly #pass: () => Promise<void>;
  readonly #defaultDelayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  /** `pass` must not reject (each caller says how its failures are reported). */
  constructor(pass: () => Promise<void>, defaultDelayMs: number) {
    this.#pass = pass;
    this.#defaultDelayMs = defaultDelayMs;
  }

  schedule(delayMs = this.#defaultDelayMs): void {
    if (this.#stopped) return;
    const due = performance.now() + delayMs;
    if (this.#timer) {
      if (due >= this.#due) return;
      clearTimeout(this.#timer);
    }
    this.#due = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) return void (this.#again = true);
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
    }, delayMs);
  }

  /** No pass starts from now on; resolves when the one running, if any, has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
