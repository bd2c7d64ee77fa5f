// Newline-delimited JSON as a watch streams it: chunks cut anywhere (inside a line, inside a UTF-8
// character) come out as whole lines. A line that grows past the limit is an error, never
// unbounded memory.
import { StringDecoder } from 'node:string_decoder';
import { KubeApiError } from './errors.ts';

export class LineSplitter {
  readonly #decoder = new StringDecoder('utf8');
  readonly #maxLine: number;
  #partial = '';

  /** `maxLine`: characters; a DaemonSet is a few kilobytes, a watch event hardly more. */
  constructor(maxLine = 4 << 20) {
    this.#maxLine = maxLine;
  }

  /** The lines this chunk completes, without their newline (empty lines included). */
  push(chunk: Buffer): string[] {
    const lines = (this.#partial + this.#decoder.write(chunk)).split('\n');
    this.#partial = lines.pop() ?? '';
    if (this.#partial.length > this.#maxLine) throw new KubeApiError('KUBE_DECODE', `a watch event is longer than ${this.#maxLine} characters`);
    return lines;
  }

  /** What followed the last newline: '' when the stream ended on a line boundary. */
  end(): string {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    return rest;
  }
}
