// What the controller and the agent agree on about tracing: the annotation that sets a namespace's
// (or a pod's) sampling ratio, and how its value reads.

/** On a namespace or a pod: the share of requests arriving without a trace for which the agent starts one. */
export const TRACE_SAMPLING_ANNOTATION = 'weft.dev/trace-sampling';

/** A sampling ratio as written in a chart value or an annotation: 0 to 1, or a percentage ("2.5%"). */
export function parseRatio(text: string): number | undefined {
  const t = text.trim();
  const percent = t.endsWith('%');
  const n = Number(percent ? t.slice(0, -1) : t);
  if (t === '' || t === '%' || !Number.isFinite(n)) return undefined;
  const r = percent ? n / 100 : n;
  return r >= 0 && r <= 1 ? r : undefined;
}
