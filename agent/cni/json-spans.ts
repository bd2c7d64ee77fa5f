// Where things are in a JSON text, so that a conflist can be edited by splicing text instead of
// re-serializing it: everything weft does not touch keeps its exact bytes (formatting, key order,
// number spelling), and removing what weft inserted gives back the original file.
// Callers pass text JSON.parse has already accepted; this scanner does not re-validate it.

export interface Span {
  /** Index of the first character. */
  start: number;
  /** Index one past the last character. */
  end: number;
}

export interface Member {
  key: string;
  value: Span;
}

const WS = new Set([' ', '\t', '\n', '\r']);

export function skipWhitespace(text: string, i: number): number {
  while (i < text.length && WS.has(text[i] as string)) i++;
  return i;
}

/** End of the value starting at `i` (which must not be whitespace). */
export function valueEnd(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return stringEnd(text, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text[j];
      if (d === '"') j = stringEnd(text, j) - 1;
      else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    throw new Error('unterminated JSON container');
  }
  let j = i;
  while (j < text.length && !WS.has(text[j] as string) && text[j] !== ',' && text[j] !== ']' && text[j] !== '}') j++;
  return j;
}

function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === '"') return j + 1;
  }
  throw new Error('unterminated JSON string');
}

/** The members of the object starting at `start` (text[start] === '{'). */
export function objectMembers(text: string, start: number): Member[] {
  const out: Member[] = [];
  let i = skipWhitespace(text, start + 1);
  while (text[i] !== '}') {
    const keyEnd = stringEnd(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWhitespace(text, keyEnd) + 1; // past ':'
    const vStart = skipWhitespace(text, i);
    const vEnd = valueEnd(text, vStart);
    out.push({ key, value: { start: vStart, end: vEnd } });
    i = skipWhitespace(text, vEnd);
    if (text[i] === ',') i = skipWhitespace(text, i + 1);
  }
  return out;
}

/** The elements of the array starting at `start` (text[start] === '['). */
export function arrayElements(text: string, start: number): Span[] {
  const out: Span[] = [];
  let i = skipWhitespace(text, start + 1);
  while (text[i] !== ']') {
    const end = valueEnd(text, i);
    out.push({ start: i, end });
    i = skipWhitespace(text, end);
    if (text[i] === ',') i = skipWhitespace(text, i + 1);
  }
  return out;
}
