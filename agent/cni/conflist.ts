// Chaining weft-cni into a CNI network configuration, as text edits: the entry is appended to
// the `plugins` array (weft-cni must see the final addresses, so it goes last) and removed again
// by cutting exactly what was inserted. The rest of the file keeps its bytes, so an uninstall
// hands the primary CNI back its own file, and a component that compares bytes sees no churn.
import { WEFT_CNI_TYPE } from '../../api/cni.ts';
import type { WeftCniSettings } from '../../api/cni.ts';
import { arrayElements, objectMembers, skipWhitespace } from './json-spans.ts';
import type { Span } from './json-spans.ts';
import { CodedError } from '../../api/coded-error.ts';

export class ConflistError extends CodedError<'CONF_NOT_JSON' | 'CONF_NOT_A_LIST' | 'CONF_NO_PLUGINS'> {
  override readonly name = 'ConflistError';
}

export interface Edit {
  text: string;
  changed: boolean;
}

/** weft-cni's conflist entry for these settings. */
export function weftCniEntry(settings: WeftCniSettings): Record<string, unknown> {
  return { type: WEFT_CNI_TYPE, ...settings };
}

/** Adds (or updates) the weft-cni entry in a conflist's text. No change when already in place. */
export function chainIntoConflist(text: string, entry: Record<string, unknown>): Edit {
  const { elements } = locatePlugins(text);
  const ours = elements.filter((e) => e.weft);
  if (ours.length === 1 && sameJson(ours[0]?.value, entry)) return { text, changed: false };
  // Any stale or duplicated weft entry goes; the current one is appended at the end.
  const base = ours.length === 0 ? text : removeElements(text, ours.map((e) => e.span));
  const again = locatePlugins(base);
  const last = again.elements.at(-1);
  if (last === undefined) throw new ConflistError('CONF_NO_PLUGINS', 'the conflist has no plugins to chain after');
  const { separator, indent } = layout(base, again.plugins, again.elements[0]?.span ?? last.span);
  const rendered = render(entry, indent, separator.includes('\n'));
  return { text: `${base.slice(0, last.span.end)},${separator}${rendered}${base.slice(last.span.end)}`, changed: true };
}

/** Removes every weft-cni entry, restoring the bytes that were there before it was chained. */
export function unchainFromConflist(text: string): Edit {
  const { elements } = locatePlugins(text);
  const ours = elements.filter((e) => e.weft).map((e) => e.span);
  if (ours.length === 0) return { text, changed: false };
  return { text: removeElements(text, ours), changed: true };
}

/** Whether the text is a conflist that already chains weft-cni. */
export function isChained(text: string): boolean {
  try {
    return locatePlugins(text).elements.some((e) => e.weft);
  } catch {
    return false;
  }
}

/**
 * Turns a single-plugin `.conf` into a conflist holding it and then weft-cni (libcni does the
 * same conversion in memory: the whole conf becomes the first plugin).
 */
export function conflistFromConf(confText: string, entry: Record<string, unknown>): string {
  const conf = parseObject(confText);
  if (Array.isArray(conf.plugins)) throw new ConflistError('CONF_NOT_A_LIST', 'already a conflist');
  const list = { cniVersion: conf.cniVersion, name: conf.name, plugins: [conf, entry] };
  return JSON.stringify(list, null, 2) + '\n';
}

interface Element {
  span: Span;
  value: unknown;
  weft: boolean;
}

function locatePlugins(text: string): { plugins: Span; elements: Element[] } {
  const doc = parseObject(text);
  if (!Array.isArray(doc.plugins)) throw new ConflistError('CONF_NOT_A_LIST', 'no "plugins" array: not a conflist');
  const values = doc.plugins as unknown[];
  const top = skipWhitespace(text, 0);
  // JSON.parse keeps the last of duplicated keys; so do we.
  const member = objectMembers(text, top).filter((m) => m.key === 'plugins').at(-1);
  if (member === undefined) throw new ConflistError('CONF_NOT_A_LIST', 'no "plugins" array: not a conflist');
  const spans = arrayElements(text, member.value.start);
  return {
    plugins: member.value,
    elements: spans.map((span, i) => {
      const value = values[i];
      const weft = typeof value === 'object' && value !== null && (value as { type?: unknown }).type === WEFT_CNI_TYPE;
      return { span, value, weft };
    }),
  };
}

/**
 * Cuts each span together with the separator that joins it to its neighbour: from the end of the
 * element before it (so `, <ws> {weft}` disappears), or, for a first element, up to the start of
 * the one after it. This is the exact inverse of the append in chainIntoConflist.
 */
function removeElements(text: string, spans: Span[]): string {
  let out = text;
  // Right to left, so earlier offsets stay valid.
  for (const span of [...spans].sort((a, b) => b.start - a.start)) {
    const { elements } = locatePlugins(out);
    const i = elements.findIndex((e) => e.span.start === span.start);
    const prev = elements[i - 1];
    const next = elements[i + 1];
    if (prev !== undefined) out = out.slice(0, prev.span.end) + out.slice(span.end);
    else if (next !== undefined) out = out.slice(0, span.start) + out.slice(next.span.start);
    else out = out.slice(0, span.start) + out.slice(span.end);
  }
  return out;
}

/** How elements are separated and indented in this file's plugins array. */
function layout(text: string, plugins: Span, first: Span): { separator: string; indent: string } {
  const separator = text.slice(plugins.start + 1, first.start);
  const nl = separator.lastIndexOf('\n');
  return { separator: separator === '' ? ' ' : separator, indent: nl >= 0 ? separator.slice(nl + 1) : '' };
}

function render(entry: Record<string, unknown>, indent: string, multiline: boolean): string {
  if (!multiline) return JSON.stringify(entry);
  const unit = indent.startsWith('\t') ? '\t' : '  ';
  return JSON.stringify(entry, null, unit).replaceAll('\n', `\n${indent}`);
}

function parseObject(text: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConflistError('CONF_NOT_JSON', `not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConflistError('CONF_NOT_JSON', 'not a JSON object');
  return doc as Record<string, unknown>;
}

/** Structural equality, ignoring key order (another tool may re-serialize our entry). */
function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
