/**
 * The worklist: flagged images nobody has labeled yet, most urgent first (see policy.ts for the
 * priority), filtered by reason and name prefix, paged on the server.
 *
 * Listing flagged/ and labels/ is what costs at 10,000+ flagged images, so each instance keeps a
 * snapshot of both listings per prefix: younger than `WORKLIST_SNAPSHOT_MS` (or ten times the time
 * its listing took, if longer) it is used as is, older it is still used while a new listing runs behind it, so only an instance's first request waits
 * for a listing. Labels written or undone through this instance (handleLabel, undoLabel) count at
 * once; new flags and labels written elsewhere (another instance, the CLI in another process)
 * show once a listing that started after them is done. Only the page
 * asked for is read in full: its prediction records (classes, probabilities, the review rule) and upload times,
 * kept per instance while the flagged record's ETag stays the same.
 */
import type { PredictionRecord } from '../storage/records/prediction';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths, uploadNameFromRecord } from '../storage/layout';
import { mapLimit } from '../util/mapLimit';

/** How long a listing snapshot serves worklist requests before a new listing starts (milliseconds)... */
export const WORKLIST_SNAPSHOT_MS = 5000;
/** ...or this many times as long as the listing took, if longer: listings keep the storage busy at most 1/10 of the time. */
export const LISTING_SHARE = 10;
/**
 * Blobs per listing request. A refresh runs while requests are answered from the stale snapshot,
 * and their reads wait behind the listing: with 5,000 per request (the service's default) a page
 * read took as long as the whole listing of 10,050 flagged records (4.5-4.9 s), with 500 0.45-0.76 s
 * at about the same listing time (bench/results/worklist-stale.md).
 */
export const LISTING_PAGE = 500;

export interface WorklistQuery {
  page: number;
  pageSize: number;
  /** Only items flagged for this reason. */
  reason?: string;
  /** Only uploads whose name starts with this (a batch prefix such as `batch-1/`). */
  prefix?: string;
}

export interface ClassProbability {
  class: string;
  probability: number;
}

export interface WorklistItem {
  upload: string;
  priority: number;
  reasons: string[];
  /** The upload's first virtual folder with its slash (`batch-1/`), or '' for a name without one. */
  batch: string;
  /** The model's answer, from the prediction record (absent only if the record could not be read). */
  topClass?: string;
  confidence?: number;
  /** The classes by probability, most probable first (at most three). */
  top?: ClassProbability[];
  /**
   * Screening models: the positive (abnormal) class, its probability and the threshold it is
   * flagged at (probability >= threshold). Absent for other models and for records written before
   * prediction records named their threshold.
   */
  screening?: { positiveClass: string; probability: number; threshold: number };
  /** Other models: the selective confidence threshold a prediction below is flagged at (null: every prediction is). */
  confidenceThreshold?: number | null;
  modelVersion?: string;
  /** SHA-256 of the upload the record belongs to (image URLs carry it, so a re-upload is not served from a cache). */
  sha256?: string;
  scoredAt?: string;
  /** When the upload blob was last written. */
  uploadedAt?: string;
}

export interface Worklist {
  items: WorklistItem[];
  page: number;
  pageSize: number;
  /** Items that match the filters (all pages). */
  total: number;
  /** Items per reason under the prefix filter, before the reason filter. */
  reasonCounts: Record<string, number>;
}

interface FlagEntry {
  upload: string;
  priority: number;
  reasons: string[];
  /** ETag of the flagged record: a re-score (of a re-upload) changes it, and the page reads it anew. */
  etag: string;
}

interface Snapshot {
  takenAt: number;
  /** How long the listing took: a snapshot stays fresh for at least LISTING_SHARE times that. */
  listingMs: number;
  /** Sorted by priority, most urgent first. Labeled ones included: `labeled` filters them. */
  flagged: FlagEntry[];
  labeled: Set<string>;
}

/** What the prediction record (the flagged blob's body) holds that the worklist shows. */
interface FlagBody {
  source?: { sha256?: string };
  model?: { version?: string };
  probabilities?: Record<string, number>;
  topClass?: string;
  confidence?: number;
  /** Absent in records written before the review rule was recorded. */
  threshold?: PredictionRecord['threshold'];
  time?: string;
}

interface Slot {
  current?: Snapshot;
  refreshing?: Promise<Snapshot>;
}

interface StoreState {
  slots: Map<string, Slot>;
  /** Labels written or undone through this instance, with when: they override snapshots taken before. */
  local: Map<string, { labeled: boolean; at: number }>;
}

const MAX_LOCAL = 50_000;
/** Prefix filters whose listing snapshots an instance keeps. */
const MAX_PREFIXES = 64;
const states = new WeakMap<BlobStore, StoreState>();

function stateOf(store: BlobStore): StoreState {
  let st = states.get(store);
  if (st === undefined) {
    st = { slots: new Map(), local: new Map() };
    states.set(store, st);
  }
  return st;
}

/** Items already read in full, by upload name, valid while the flagged record keeps its ETag. */
const details = new WeakMap<BlobStore, Map<string, { etag: string; item: WorklistItem }>>();
const MAX_DETAILS = 20_000;

function detailsOf(store: BlobStore): Map<string, { etag: string; item: WorklistItem }> {
  let m = details.get(store);
  if (m === undefined) {
    m = new Map();
    details.set(store, m);
  }
  return m;
}

async function takeSnapshot(store: BlobStore, prefix: string, now: number): Promise<Snapshot> {
  const labeled = new Set<string>();
  const flagged: FlagEntry[] = [];
  await Promise.all([
    (async () => {
      for await (const e of store.list(CONTAINERS.labels, prefix === '' ? undefined : prefix, false, LISTING_PAGE)) {
        const n = uploadNameFromRecord(e.name);
        if (n !== undefined) labeled.add(n);
      }
    })(),
    (async () => {
      for await (const e of store.list(CONTAINERS.flagged, prefix === '' ? undefined : prefix, true, LISTING_PAGE)) {
        const n = uploadNameFromRecord(e.name);
        if (n === undefined) continue;
        flagged.push({
          upload: n,
          priority: Number(e.metadata.priority ?? '0'),
          reasons: (e.metadata.reasons ?? '').split(',').filter((r) => r !== ''),
          etag: e.etag,
        });
      }
    })(),
  ]);
  flagged.sort((a, b) => b.priority - a.priority || (a.upload < b.upload ? -1 : a.upload > b.upload ? 1 : 0));
  return { takenAt: now, listingMs: Date.now() - now, flagged, labeled };
}

/**
 * The listing snapshot for a prefix. A fresh one is used as is; a stale one is still served while
 * a new listing runs behind it (so only the first request of an instance waits for a listing).
 */
function snapshot(store: BlobStore, prefix: string, maxAgeMs: number): Promise<Snapshot> {
  const { slots } = stateOf(store);
  let slot = slots.get(prefix);
  if (slot === undefined) {
    if (slots.size >= MAX_PREFIXES) slots.delete(slots.keys().next().value as string);
    slot = {};
    slots.set(prefix, slot);
  }
  const s = slot;
  if (
    s.current !== undefined &&
    Date.now() - s.current.takenAt <= Math.max(maxAgeMs, LISTING_SHARE * s.current.listingMs)
  )
    return Promise.resolve(s.current);
  if (s.refreshing === undefined) {
    s.refreshing = takeSnapshot(store, prefix, Date.now())
      .then((snap) => {
        s.current = snap;
        return snap;
      })
      .finally(() => {
        s.refreshing = undefined;
      });
    // A failed refresh behind a served snapshot is retried by the next request, not thrown at nobody.
    s.refreshing.catch(() => undefined);
  }
  return s.current !== undefined ? Promise.resolve(s.current) : s.refreshing;
}

/** Starts the listing of the whole worklist if this instance has none yet (the page calls it as it loads). */
export function warmWorklist(store: BlobStore): void {
  void snapshot(store, '', WORKLIST_SNAPSHOT_MS).catch(() => undefined);
}

/** A label written (or undone) through this instance: the image leaves (or rejoins) the worklist at once. */
export function noteLabeled(store: BlobStore, upload: string, labeled: boolean): void {
  const { local } = stateOf(store);
  local.delete(upload);
  if (local.size >= MAX_LOCAL) local.delete(local.keys().next().value as string);
  local.set(upload, { labeled, at: Date.now() });
}

function isLabeled(st: StoreState, snap: Snapshot, upload: string): boolean {
  const l = st.local.get(upload);
  return l !== undefined && l.at >= snap.takenAt ? l.labeled : snap.labeled.has(upload);
}

export function batchOf(upload: string): string {
  const slash = upload.indexOf('/');
  return slash < 0 ? '' : upload.slice(0, slash + 1);
}

export function topClasses(probabilities: Record<string, number> | undefined, n = 3): ClassProbability[] {
  if (probabilities === undefined) return [];
  return Object.entries(probabilities)
    .map(([c, p]) => ({ class: c, probability: p }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, n);
}

async function readItem(store: BlobStore, f: FlagEntry): Promise<WorklistItem> {
  const [body, upload] = await Promise.all([
    store.getJson<FlagBody>(CONTAINERS.flagged, paths.flagged(f.upload)).catch(() => undefined),
    store.head(CONTAINERS.uploads, paths.upload(f.upload)).catch(() => undefined),
  ]);
  const b = body?.value;
  const t = b?.threshold;
  const positive = t?.kind === 'screening' ? b?.probabilities?.[t.positiveClass] : undefined;
  return {
    upload: f.upload,
    priority: f.priority,
    reasons: f.reasons,
    batch: batchOf(f.upload),
    ...(b?.topClass !== undefined ? { topClass: b.topClass } : {}),
    ...(b?.confidence !== undefined ? { confidence: b.confidence } : {}),
    ...(b?.probabilities !== undefined ? { top: topClasses(b.probabilities) } : {}),
    ...(t?.kind === 'screening' && positive !== undefined
      ? { screening: { positiveClass: t.positiveClass, probability: positive, threshold: t.value } }
      : {}),
    ...(t?.kind === 'confidence' ? { confidenceThreshold: t.value } : {}),
    ...(b?.model?.version !== undefined ? { modelVersion: b.model.version } : {}),
    ...(b?.source?.sha256 !== undefined ? { sha256: b.source.sha256 } : {}),
    ...(b?.time !== undefined ? { scoredAt: b.time } : {}),
    ...(upload?.lastModified !== undefined ? { uploadedAt: upload.lastModified.toISOString() } : {}),
  };
}

export async function readWorklist(
  store: BlobStore,
  q: WorklistQuery,
  opts: { maxAgeMs?: number } = {},
): Promise<Worklist> {
  const snap = await snapshot(store, q.prefix ?? '', opts.maxAgeMs ?? WORKLIST_SNAPSHOT_MS);
  const st = stateOf(store);
  const reasonCounts: Record<string, number> = {};
  const matching: FlagEntry[] = [];
  for (const f of snap.flagged) {
    if (isLabeled(st, snap, f.upload)) continue;
    for (const r of f.reasons) reasonCounts[r] = (reasonCounts[r] ?? 0) + 1;
    if (q.reason === undefined || f.reasons.includes(q.reason)) matching.push(f);
  }
  const pageItems = matching.slice((q.page - 1) * q.pageSize, q.page * q.pageSize);
  const known = detailsOf(store);
  const items = await mapLimit(pageItems, 16, async (f): Promise<WorklistItem> => {
    const hit = known.get(f.upload);
    if (hit !== undefined && hit.etag === f.etag) return { ...hit.item, priority: f.priority, reasons: f.reasons };
    const item = await readItem(store, f);
    if (item.topClass !== undefined) {
      if (known.size >= MAX_DETAILS) known.delete(known.keys().next().value as string);
      known.set(f.upload, { etag: f.etag, item });
    }
    return item;
  });
  return { items, page: q.page, pageSize: q.pageSize, total: matching.length, reasonCounts };
}
