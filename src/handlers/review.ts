/**
 * The review loop's handlers: label an image, list the worklist, fetch a prediction.
 * They return plain results with an HTTP status, so the HTTP functions and the CLI share them.
 */
import type { Deps } from '../composition';
import { findCard, readCurrent } from '../registry/registry';
import { readPreprocessedRecord } from './preprocess';
import { CONTAINERS, invalidUploadName, paths, uploadNameFromRecord } from '../storage/layout';

export type Result<T> = { status: 200 | 201; body: T } | { status: 400 | 404 | 409 | 422; body: { error: string; [k: string]: unknown } };

export interface LabelEntry {
  class: string;
  labeledBy: string;
  labeledAt: string;
  note?: string;
}

export interface LabelRecord extends LabelEntry {
  upload: string;
  source: { sha256: string };
  /** What the model said when the reviewer labeled it, if it had been scored. */
  prediction?: { modelVersion: string; topClass: string; confidence: number };
  /** Earlier labels of this image, newest first. */
  history: LabelEntry[];
}

/** What a prediction record holds that the review loop reads. */
export interface PredictionSummary {
  upload: string;
  source: { sha256: string };
  model: { version: string };
  topClass: string;
  confidence: number;
  review: { flagged: boolean; reasons: string[]; priority: number };
}

export interface LabelRequest {
  name: string;
  body: unknown;
  by: string;
}

const MAX_NOTE = 2000;

/** The 400 for a name that is no upload name (it could address another container), else undefined. */
function refuseName(name: string): Result<never> | undefined {
  const bad = invalidUploadName(name);
  return bad === undefined ? undefined : { status: 400, body: { error: `Not an image name: ${bad}.` } };
}

/** The current label record; 'unreadable' when the blob is not a label record (not JSON, or no object). */
async function readLabel(deps: Deps, name: string): Promise<{ value: LabelRecord; etag: string } | undefined | 'unreadable'> {
  let r: { value: unknown; etag: string } | undefined;
  try {
    r = await deps.store.getJson<unknown>(CONTAINERS.labels, paths.label(name));
  } catch (err) {
    if (err instanceof SyntaxError) return 'unreadable';
    throw err;
  }
  if (r === undefined) return undefined;
  const v = r.value as Partial<LabelRecord> | null;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof v.class !== 'string' || (v.history !== undefined && !Array.isArray(v.history))) return 'unreadable';
  return { value: { ...(v as LabelRecord), history: v.history ?? [] }, etag: r.etag };
}

export async function handleLabel(req: LabelRequest, deps: Deps): Promise<Result<LabelRecord>> {
  const refused = refuseName(req.name);
  if (refused !== undefined) return refused;
  const { store } = deps;
  if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body)) {
    return { status: 400, body: { error: 'The body must be a JSON object such as {"class": "7"}.' } };
  }
  const body = req.body as Record<string, unknown>;
  const cls = body.class;
  if (typeof cls !== 'string' || cls.trim() === '') {
    return { status: 400, body: { error: 'The body needs "class": the label as a non-empty string, e.g. {"class": "7"}.' } };
  }
  if (body.note !== undefined && (typeof body.note !== 'string' || body.note.length > MAX_NOTE)) {
    return { status: 400, body: { error: `"note" must be a string of at most ${MAX_NOTE} characters.` } };
  }
  const by = typeof body.reviewer === 'string' && body.reviewer.trim() !== '' ? body.reviewer.trim() : req.by;

  const meta = await readPreprocessedRecord(store, req.name);
  if (meta === undefined) {
    const rejected = await store.getJson<{ code: string }>(CONTAINERS.rejected, paths.rejected(req.name));
    if (rejected !== undefined) {
      return { status: 409, body: { error: `Image ${req.name} was rejected (${rejected.value.code}) and has nothing to label.` } };
    }
    return { status: 404, body: { error: `There is no image named ${JSON.stringify(req.name)} (no preprocessed record).` } };
  }
  const prediction = (await store.getJson<PredictionSummary>(CONTAINERS.predictions, paths.prediction(req.name)))?.value;
  const version = prediction?.model.version ?? (await readCurrent(store))?.value.version;
  const card = version === undefined ? undefined : await findCard(store, version);
  if (card === undefined) {
    return { status: 409, body: { error: 'No model is promoted yet, so the classes to label with are not known.' } };
  }
  if (!card.classNames.includes(cls)) {
    return { status: 422, body: { error: `Unknown class ${JSON.stringify(cls)}; model ${card.version} knows ${card.classNames.join(', ')}.`, classes: card.classNames } };
  }

  const entry: LabelEntry = {
    class: cls,
    labeledBy: by,
    labeledAt: deps.now().toISOString(),
    ...(typeof body.note === 'string' ? { note: body.note } : {}),
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = await readLabel(deps, req.name);
    if (existing === 'unreadable') {
      return { status: 409, body: { error: `The label record of ${req.name} (${CONTAINERS.labels}/${paths.label(req.name)}) is not a label record (not JSON, or not an object with "class"); fix or remove it first.` } };
    }
    const record: LabelRecord = {
      upload: req.name,
      ...entry,
      source: { sha256: meta.source.sha256 },
      ...(prediction !== undefined ? { prediction: { modelVersion: prediction.model.version, topClass: prediction.topClass, confidence: prediction.confidence } } : {}),
      history: existing === undefined ? [] : [pickEntry(existing.value), ...existing.value.history],
    };
    const res = await store.putJson(CONTAINERS.labels, paths.label(req.name), record, existing === undefined ? { ifNoneExists: true } : { ifMatch: existing.etag });
    if (res.written) return { status: existing === undefined ? 201 : 200, body: record };
  }
  return { status: 409, body: { error: `The label of ${req.name} kept changing under concurrent writers; try again.` } };
}

function pickEntry(r: LabelRecord): LabelEntry {
  return { class: r.class, labeledBy: r.labeledBy, labeledAt: r.labeledAt, ...(r.note !== undefined ? { note: r.note } : {}) };
}

export interface WorklistItem {
  upload: string;
  priority: number;
  reasons: string[];
}

export interface Worklist {
  items: WorklistItem[];
  page: number;
  pageSize: number;
  total: number;
}

/** Flagged images that nobody has labeled yet, most urgent first. */
export async function handleWorklist(query: { page?: string | null; pageSize?: string | null }, deps: Deps): Promise<Result<Worklist>> {
  const page = parsePositive(query.page, 1);
  const pageSize = parsePositive(query.pageSize, 50);
  if (page === undefined || pageSize === undefined || pageSize > 500) {
    return { status: 400, body: { error: 'page must be a positive integer and pageSize an integer from 1 to 500.' } };
  }
  const { store } = deps;
  const labeled = new Set<string>();
  for await (const e of store.list(CONTAINERS.labels)) {
    const n = uploadNameFromRecord(e.name);
    if (n !== undefined) labeled.add(n);
  }
  const items: WorklistItem[] = [];
  for await (const e of store.list(CONTAINERS.flagged, undefined, true)) {
    const n = uploadNameFromRecord(e.name);
    if (n === undefined || labeled.has(n)) continue;
    items.push({ upload: n, priority: Number(e.metadata.priority ?? '0'), reasons: (e.metadata.reasons ?? '').split(',').filter((r) => r !== '') });
  }
  items.sort((a, b) => b.priority - a.priority || a.upload.localeCompare(b.upload));
  return { status: 200, body: { items: items.slice((page - 1) * pageSize, page * pageSize), page, pageSize, total: items.length } };
}

export async function handleGetPrediction(name: string, deps: Deps): Promise<Result<unknown>> {
  const refused = refuseName(name);
  if (refused !== undefined) return refused;
  const p = await deps.store.getJson<unknown>(CONTAINERS.predictions, paths.prediction(name));
  if (p !== undefined) return { status: 200, body: p.value };
  const rejected = await deps.store.getJson<{ code: string; message: string }>(CONTAINERS.rejected, paths.rejected(name));
  if (rejected !== undefined) return { status: 404, body: { error: `Image ${name} was rejected (${rejected.value.code}): ${rejected.value.message}` } };
  const pre = await deps.store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
  if (pre !== undefined) return { status: 404, body: { error: `Image ${name} is preprocessed but not scored yet (is a model promoted?).`, pending: true } };
  return { status: 404, body: { error: `There is no image named ${JSON.stringify(name)}.` } };
}

function parsePositive(v: string | null | undefined, dflt: number): number | undefined {
  if (v === undefined || v === null || v === '') return dflt;
  if (!/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return n >= 1 ? n : undefined;
}
