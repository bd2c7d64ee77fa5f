// The parts of list answers and watch events that the agent reads, checked where they enter:
// an object's name, UID, resourceVersion and deletionTimestamp, and a watch's ERROR Status.
// Everything else in the object (a DaemonSet's spec and status) is ignored.
import { KubeApiError } from './errors.ts';

export interface ObjectHead {
  name: string;
  uid: string;
  resourceVersion: string;
  /** Set once deletion has begun (finalizers, `--cascade foreground`) and before it completes. */
  deletionTimestamp: string | undefined;
}

export interface ListHead {
  resourceVersion: string;
  items: ObjectHead[];
}

export type WatchEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: ObjectHead }
  /** Only a newer resourceVersion to resume from (allowWatchBookmarks). */
  | { type: 'BOOKMARK'; resourceVersion: string }
  /** The API server ends the watch: 410 Gone when the resourceVersion is too old to resume from. */
  | { type: 'ERROR'; status: { code: number; reason: string; message: string } };

const invalid = (why: string) => new KubeApiError('KUBE_DECODE', why);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function metadataOf(v: unknown, where: string): Json {
  if (!isObject(v) || !isObject(v.metadata)) throw invalid(`${where}: no metadata`);
  return v.metadata;
}

function resourceVersionOf(meta: Json, where: string): string {
  const rv = meta.resourceVersion;
  if (typeof rv !== 'string' || rv === '') throw invalid(`${where}: no resourceVersion`);
  return rv;
}

export function parseObjectHead(v: unknown, where = 'object'): ObjectHead {
  const m = metadataOf(v, where);
  if (typeof m.name !== 'string' || m.name === '') throw invalid(`${where}: no name`);
  if (typeof m.uid !== 'string' || m.uid === '') throw invalid(`${where}: no uid`);
  const deletion = m.deletionTimestamp;
  if (deletion !== undefined && deletion !== null && typeof deletion !== 'string') throw invalid(`${where}: deletionTimestamp is not a string`);
  return { name: m.name, uid: m.uid, resourceVersion: resourceVersionOf(m, where), deletionTimestamp: typeof deletion === 'string' ? deletion : undefined };
}

/** A list answer (`kind: ...List`). */
export function parseList(v: unknown): ListHead {
  const rv = resourceVersionOf(metadataOf(v, 'list'), 'list');
  const items = (v as Json).items;
  // An empty list may come as `items: null`.
  if (items !== null && items !== undefined && !Array.isArray(items)) throw invalid('list: items is not an array');
  return { resourceVersion: rv, items: (items ?? []).map((o, i) => parseObjectHead(o, `list item ${i}`)) };
}

/** One line of a watch stream. */
export function parseWatchEvent(line: string): WatchEvent {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw invalid(`watch event is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  if (!isObject(v)) throw invalid('watch event is not an object');
  const { type, object } = v;
  switch (type) {
    case 'ADDED':
    case 'MODIFIED':
    case 'DELETED':
      return { type, object: parseObjectHead(object, `${type} event`) };
    case 'BOOKMARK':
      return { type, resourceVersion: resourceVersionOf(metadataOf(object, 'BOOKMARK event'), 'BOOKMARK event') };
    case 'ERROR': {
      const s = isObject(object) ? object : {};
      return {
        type,
        status: {
          code: typeof s.code === 'number' ? s.code : 0,
          reason: typeof s.reason === 'string' ? s.reason : '',
          message: typeof s.message === 'string' ? s.message.slice(0, 300) : '',
        },
      };
    }
    default:
      throw invalid(`watch event of unknown type ${JSON.stringify(type)}`);
  }
}
