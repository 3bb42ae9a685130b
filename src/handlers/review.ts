/**
 * The review loop's handlers: label an image, list the worklist, fetch a prediction.
 * They return plain results with an HTTP status, so the HTTP functions and the CLI share them.
 */
import type { Deps } from '../composition';
import type { Result } from './http';
import { findCard, readCurrent } from '../registry/registry';
import { CONTAINERS, invalidUploadName, paths } from '../storage/layout';
import { LabelEntry, LabelRecord, readLabelRecord } from '../storage/records/label';
import { readPreprocessedRecord } from '../storage/records/preprocessed';
import { noteLabeled, readWorklist, Worklist } from '../triage/worklist';

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
  /** `by` is the signed-in principal: a "reviewer" field in the body is ignored. */
  verified?: boolean;
}

const MAX_NOTE = 2000;

/** The 400 for a name that is no upload name (it could address another container), else undefined. */
function refuseName(name: string): Result<never> | undefined {
  const bad = invalidUploadName(name);
  return bad === undefined ? undefined : { status: 400, body: { error: `Not an image name: ${bad}.` } };
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
    return {
      status: 400,
      body: { error: 'The body needs "class": the label as a non-empty string, e.g. {"class": "7"}.' },
    };
  }
  if (body.note !== undefined && (typeof body.note !== 'string' || body.note.length > MAX_NOTE)) {
    return { status: 400, body: { error: `"note" must be a string of at most ${MAX_NOTE} characters.` } };
  }
  const by =
    req.verified !== true && typeof body.reviewer === 'string' && body.reviewer.trim() !== ''
      ? body.reviewer.trim()
      : req.by;

  const meta = await readPreprocessedRecord(store, req.name);
  if (meta === undefined) {
    const rejected = await store.getJson<{ code: string }>(CONTAINERS.rejected, paths.rejected(req.name));
    if (rejected !== undefined) {
      return {
        status: 409,
        body: { error: `Image ${req.name} was rejected (${rejected.value.code}) and has nothing to label.` },
      };
    }
    return {
      status: 404,
      body: { error: `There is no image named ${JSON.stringify(req.name)} (no preprocessed record).` },
    };
  }
  const prediction = (await store.getJson<PredictionSummary>(CONTAINERS.predictions, paths.prediction(req.name)))
    ?.value;
  const version = prediction?.model.version ?? (await readCurrent(store))?.value.version;
  const card = version === undefined ? undefined : await findCard(store, version);
  if (card === undefined) {
    return { status: 409, body: { error: 'No model is promoted yet, so the classes to label with are not known.' } };
  }
  if (!card.classNames.includes(cls)) {
    return {
      status: 422,
      body: {
        error: `Unknown class ${JSON.stringify(cls)}; model ${card.version} knows ${card.classNames.join(', ')}.`,
        classes: card.classNames,
      },
    };
  }

  const entry: LabelEntry = {
    class: cls,
    labeledBy: by,
    labeledAt: deps.now().toISOString(),
    ...(typeof body.note === 'string' ? { note: body.note } : {}),
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = await readLabelRecord(store, req.name);
    if (existing === 'unreadable') {
      return {
        status: 409,
        body: {
          error: `The label record of ${req.name} (${CONTAINERS.labels}/${paths.label(req.name)}) is not a label record (not JSON, or not an object with "class"); fix or remove it first.`,
        },
      };
    }
    const record: LabelRecord = {
      upload: req.name,
      ...entry,
      source: { sha256: meta.source.sha256 },
      ...(prediction !== undefined
        ? {
            prediction: {
              modelVersion: prediction.model.version,
              topClass: prediction.topClass,
              confidence: prediction.confidence,
            },
          }
        : {}),
      history: existing === undefined ? [] : [pickEntry(existing.value), ...existing.value.history],
    };
    const res = await store.putJson(
      CONTAINERS.labels,
      paths.label(req.name),
      record,
      existing === undefined ? { ifNoneExists: true } : { ifMatch: existing.etag },
    );
    if (res.written) {
      noteLabeled(store, req.name, true);
      return { status: existing === undefined ? 201 : 200, body: record };
    }
  }
  return {
    status: 409,
    body: { error: `The label of ${req.name} kept changing under concurrent writers; try again.` },
  };
}

export interface UndoRequest {
  name: string;
  /** Who asks; only the author of the latest label may take it back. */
  by: string;
  /** `labeledAt` of the label to take back, so a newer label by someone else is never undone. */
  labeledAt: string;
}

/**
 * Takes back the latest label of an image: the one before it (from the history) becomes the label
 * again, or, for a first label, the label record is removed and the image is back in the
 * worklist. ETag-conditional like every label write; with blob versioning (as deployed) the
 * removed version stays recoverable.
 */
export async function undoLabel(
  req: UndoRequest,
  deps: Deps,
): Promise<Result<{ upload: string; label: LabelRecord | null }>> {
  const { store } = deps;
  const refused = refuseName(req.name);
  if (refused !== undefined) return refused;
  const existing = await readLabelRecord(store, req.name);
  if (existing === undefined) return { status: 404, body: { error: `Image ${req.name} has no label to undo.` } };
  if (existing === 'unreadable')
    return {
      status: 409,
      body: {
        error: `The label record of ${req.name} is not a label record (not JSON, or not an object with "class"); nothing was undone.`,
      },
    };
  const cur = existing.value;
  if (cur.labeledAt !== req.labeledAt) {
    return {
      status: 409,
      body: {
        error: `The latest label of ${req.name} is not the one to undo (it was labeled ${cur.class} at ${cur.labeledAt}).`,
        label: cur,
      },
    };
  }
  if (cur.labeledBy !== req.by) {
    return {
      status: 409,
      body: { error: `The latest label of ${req.name} is ${cur.labeledBy}'s; only they can undo it.`, label: cur },
    };
  }
  const [previous, ...older] = cur.history;
  if (previous === undefined) {
    if (!(await store.deleteIfMatch(CONTAINERS.labels, paths.label(req.name), existing.etag))) {
      return { status: 409, body: { error: `The label of ${req.name} changed meanwhile; nothing was undone.` } };
    }
    noteLabeled(store, req.name, false);
    return { status: 200, body: { upload: req.name, label: null } };
  }
  const restored: LabelRecord = { ...cur, ...previous, history: older };
  if (previous.note === undefined) delete restored.note;
  const res = await store.putJson(CONTAINERS.labels, paths.label(req.name), restored, { ifMatch: existing.etag });
  if (!res.written)
    return { status: 409, body: { error: `The label of ${req.name} changed meanwhile; nothing was undone.` } };
  return { status: 200, body: { upload: req.name, label: restored } };
}

function pickEntry(r: LabelRecord): LabelEntry {
  return {
    class: r.class,
    labeledBy: r.labeledBy,
    labeledAt: r.labeledAt,
    ...(r.note !== undefined ? { note: r.note } : {}),
  };
}

export type { Worklist, WorklistItem } from '../triage/worklist';

const REASON_RE = /^[a-z][a-z0-9-]{0,63}$/;

/** Flagged images that nobody has labeled yet, most urgent first; filters `reason` and `prefix`. */
export async function handleWorklist(
  query: { page?: string | null; pageSize?: string | null; reason?: string | null; prefix?: string | null },
  deps: Deps,
): Promise<Result<Worklist>> {
  const page = parsePositive(query.page, 1);
  const pageSize = parsePositive(query.pageSize, 50);
  if (page === undefined || pageSize === undefined || pageSize > 500) {
    return { status: 400, body: { error: 'page must be a positive integer and pageSize an integer from 1 to 500.' } };
  }
  const reason = query.reason ?? '';
  if (reason !== '' && !REASON_RE.test(reason)) {
    return {
      status: 400,
      body: {
        error: `reason must be a reason name such as low-confidence, abnormal or image-quality; got ${JSON.stringify(reason)}.`,
      },
    };
  }
  const prefix = query.prefix ?? '';
  const badPrefix = prefix === '' ? undefined : invalidPrefix(prefix);
  if (badPrefix !== undefined)
    return { status: 400, body: { error: `prefix ${JSON.stringify(prefix)} cannot be used: ${badPrefix}.` } };
  const w = await readWorklist(deps.store, {
    page,
    pageSize,
    ...(reason !== '' ? { reason } : {}),
    ...(prefix !== '' ? { prefix } : {}),
  });
  return { status: 200, body: w };
}

/** A name prefix is an upload name cut anywhere: the same rules, except that it may end with "/". */
function invalidPrefix(prefix: string): string | undefined {
  return invalidUploadName(prefix.endsWith('/') ? `${prefix}x` : prefix);
}

export async function handleGetPrediction(name: string, deps: Deps): Promise<Result<unknown>> {
  const refused = refuseName(name);
  if (refused !== undefined) return refused;
  const p = await deps.store.getJson<unknown>(CONTAINERS.predictions, paths.prediction(name));
  if (p !== undefined) return { status: 200, body: p.value };
  const rejected = await deps.store.getJson<{ code: string; message: string }>(
    CONTAINERS.rejected,
    paths.rejected(name),
  );
  if (rejected !== undefined)
    return {
      status: 404,
      body: { error: `Image ${name} was rejected (${rejected.value.code}): ${rejected.value.message}` },
    };
  const pre = await deps.store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
  if (pre !== undefined)
    return {
      status: 404,
      body: { error: `Image ${name} is preprocessed but not scored yet (is a model promoted?).`, pending: true },
    };
  return { status: 404, body: { error: `There is no image named ${JSON.stringify(name)}.` } };
}

function parsePositive(v: string | null | undefined, dflt: number): number | undefined {
  if (v === undefined || v === null || v === '') return dflt;
  if (!/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return n >= 1 ? n : undefined;
}
