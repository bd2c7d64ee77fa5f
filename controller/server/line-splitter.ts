// Newline-delimited JSON framing for what agents send: chunks in, complete lines out, with a cap
// on line length so that a peer that never sends "\n" cannot make the controller buffer without
// bound. Bytes are decoded only once a whole line is in (a UTF-8 character may span chunks).

export class LineTooLongError extends Error {
  readonly code = 'LINE_TOO_LONG';
  override readonly name = 'LineTooLongError';
}

export class LineSplitter {
  readonly #maxBytes: number;
  #parts: Buffer[] = [];
  #size = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** The complete lines this chunk finishes (without "\n" or a trailing "\r"). Throws LineTooLongError. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.#append(chunk.subarray(start, nl));
      lines.push(this.#take());
      start = nl + 1;
    }
    if (start < chunk.length) this.#append(chunk.subarray(start));
    return lines;
  }

  /** Bytes of an unfinished line held. */
  get pending(): number {
    return this.#size;
  }

  #append(part: Buffer): void {
    if (this.#size + part.length > this.#maxBytes) {
      this.#parts = [];
      this.#size = 0;
      throw new LineTooLongError(`line longer than ${this.#maxBytes} bytes`);
    }
    if (part.length > 0) {
      this.#parts.push(part);
      this.#size += part.length;
    }
  }

  #take(): string {
    const line = this.#parts.length === 1 ? (this.#parts[0] as Buffer).toString('utf8') : Buffer.concat(this.#parts, this.#size).toString('utf8');
    this.#parts = [];
    this.#size = 0;
    return line.endsWith('\r') ? line.slice(0, -1) : line;
  }
}
