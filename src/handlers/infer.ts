/**
 * infer: one preprocessed image in, one prediction record out (and a flag record when a
 * reviewer must see it). Without a promoted model the image waits: the handler returns without
 * a record and the sweep scores it once a model is promoted (a throw would retry five times and
 * end in the poison queue, which is losing it).
 */
import type { Deps } from '../composition';
import { decodeNpy } from '../imaging';
import { ShapeMismatch } from '../registry/modelCache';
import { CONTAINERS, paths } from '../storage/layout';
import type { PredictionRecord } from '../storage/records/prediction';
import { readPreprocessedRecord, scoringInfoFromMetadata } from '../storage/records/preprocessed';
import { recordSource, SOURCE_SHA_KEY, writeRecord } from '../storage/records/write';
import { decideReview, ReviewThresholds } from '../triage/policy';
import type { ModelCard } from '../ml/modelStore';
import { TransientError } from '../util/errors';
import type { Log } from '../util/log';
import { ClaimedElsewhere, runClaimed } from '../storage/claims';

export interface InferInput {
  /** Upload name (the `{name}` of preprocessed/{name}.npy). */
  name: string;
  /** The .npy bytes the trigger delivered. */
  data: Buffer;
  /** The .npy blob's metadata, when the trigger delivered it. */
  metadata?: Record<string, string>;
}

export type InferResult =
  | { status: 'scored'; flagged: boolean; modelVersion: string }
  | { status: 'already-done'; modelVersion: string }
  | { status: 'waiting-for-model' }
  | { status: 'superseded' }
  | { status: 'incompatible'; reason: string };

/**
 * The review rule of a model card: a screening model (a positive class and its threshold) flags
 * what reaches the threshold, so everything below it is cleared; other models flag predictions
 * below the selective confidence threshold (all of them when the card has none).
 */
export function thresholdsOf(card: ModelCard): ReviewThresholds {
  const s = card.thresholds.screening;
  const idx = s === undefined ? -1 : card.classNames.indexOf(s.positiveClass);
  if (s !== undefined && idx >= 0) return { abnormal: { classIndex: idx, threshold: s.threshold } };
  return { confidence: card.thresholds.selective?.threshold ?? null };
}

export async function handleInfer(input: InferInput, deps: Deps, log: Log): Promise<InferResult> {
  const started = performance.now();
  const { store } = deps;
  // The .npy's blob metadata carries what scoring needs; without it (not delivered, or an older
  // layout) the record is read.
  let info = scoringInfoFromMetadata(input.metadata);
  if (info === undefined) {
    const record = await readPreprocessedRecord(store, input.name);
    // No .npy any more: a rejection of a newer upload of the same name replaced it.
    if (record === undefined) return { status: 'superseded' };
    info = { sha256: record.source.sha256, profile: record.profile, quality: record.quality };
  }
  const sha = info.sha256;
  const model = await deps.models.current();
  if (model === undefined) {
    log.info(`infer: ${input.name} waits: no model is promoted yet`);
    return { status: 'waiting-for-model' };
  }
  const loadMs = performance.now() - started;

  // Scored already by this model for these bytes (a re-delivery, another instance, the sweep): done.
  const done = await store.head(CONTAINERS.predictions, paths.prediction(input.name));
  if (done?.metadata[SOURCE_SHA_KEY] === sha && done.metadata.modelversion === model.version) {
    log.info(`infer skipped: ${input.name} is scored by ${model.version} already`);
    return { status: 'already-done', modelVersion: model.version };
  }

  const want = model.card.preprocessing;
  if (want.profile !== info.profile.name || want.version !== info.profile.version) {
    const reason = `model ${model.version} wants preprocessing ${want.profile} v${want.version}, the image was preprocessed with ${info.profile.name} v${info.profile.version}`;
    log.warn(`infer: ${input.name} not scored: ${reason}`);
    return { status: 'incompatible', reason };
  }
  let pixels: Float32Array;
  try {
    pixels = decodeNpy(input.data).data;
  } catch (err) {
    throw new TransientError(`preprocessed/${paths.preprocessed(input.name)} is unreadable: ${String(err)}`, {
      cause: err,
    });
  }
  let scored;
  try {
    scored = await model.score(pixels);
  } catch (err) {
    if (err instanceof ShapeMismatch) return { status: 'incompatible', reason: err.message };
    throw err;
  }
  const probs = scored.probabilities;
  const rule = thresholdsOf(model.card);
  const review = decideReview(probs, rule, info.quality);
  let top = 0;
  for (let i = 1; i < probs.length; i++) if ((probs[i] ?? 0) > (probs[top] ?? 0)) top = i;
  const record: PredictionRecord = {
    upload: input.name,
    source: { sha256: sha },
    model: { version: model.version, architecture: model.card.architecture, createdAt: model.card.createdAt },
    backend: { name: model.backend.name, tfjsVersion: model.backend.tfjsVersion },
    preprocessing: { profile: info.profile.name, version: info.profile.version },
    classNames: model.card.classNames,
    probabilities: Object.fromEntries(model.card.classNames.map((c, i) => [c, round(probs[i] ?? 0)])),
    topClass: model.card.classNames[top] ?? String(top),
    confidence: round(probs[top] ?? 0),
    review,
    threshold:
      rule.abnormal !== undefined
        ? {
            kind: 'screening',
            positiveClass: model.card.classNames[rule.abnormal.classIndex] ?? String(rule.abnormal.classIndex),
            value: rule.abnormal.threshold,
          }
        : { kind: 'confidence', value: rule.confidence ?? null },
    timings: {
      loadMs: round(loadMs, 3),
      predictMs: round(scored.predictMs, 3),
      batchSize: scored.batchSize,
      totalMs: 0,
    },
    time: deps.now().toISOString(),
    instance: deps.instanceId,
  };
  record.timings.totalMs = round(performance.now() - started, 3);
  const body = JSON.stringify(record, null, 2) + '\n';
  const reviewMeta = {
    priority: review.priority.toFixed(6),
    reasons: review.reasons.join(','),
    modelversion: model.version,
  };
  // Flag first: a prediction record that says "flagged" always has its worklist entry.
  // Records of other source bytes are replaced only while the .npy still holds ours: a re-upload's
  // newer image may have been scored already by another invocation.
  const stillCurrent = async () =>
    (await recordSource(store, CONTAINERS.preprocessed, paths.preprocessed(input.name)))?.sha === sha;
  const write = (container: string, blob: string) =>
    writeRecord(store, {
      container,
      blob,
      body,
      sourceSha256: sha,
      contentType: 'application/json',
      metadata: reviewMeta,
      identityKeys: ['modelversion'],
      stillCurrent,
    });
  if (review.flagged && (await write(CONTAINERS.flagged, paths.flagged(input.name))) === 'superseded')
    return { status: 'superseded' };
  const outcome = await write(CONTAINERS.predictions, paths.prediction(input.name));
  if (outcome === 'superseded') return { status: 'superseded' };
  // A first prediction ('written') has no earlier flag; a re-score that needs no review drops its flag.
  if (!review.flagged && outcome === 'replaced') await removeFlag(deps, input.name);
  // One line per scoring run, also when another run had written the same record meanwhile.
  log.info(
    `infer: ${input.name} -> ${record.topClass} (${record.confidence}) ${review.flagged ? `flagged: ${review.reasons.join(', ')}` : ''}${outcome === 'same' ? ' (record written already)' : ''}`,
  );
  if (outcome === 'same') return { status: 'already-done', modelVersion: model.version };
  return { status: 'scored', flagged: review.flagged, modelVersion: model.version };
}

/**
 * handleInfer under a claim on the preprocessed image's version (src/storage/claims.ts), for the
 * sweep: sweeps on several instances re-drive the same stuck image, and this scores it once. The
 * trigger calls handleInfer directly: a claim costs two acknowledged writes per image (on Azurite,
 * each waits for a save of its metadata database: the X-ray demo scored 4.6 uploads/s with it, 7.8
 * without), and handleInfer already skips an image this model scored, so two instances told about
 * one image score it twice only when both start before either has written its record.
 */
export function inferOnce(
  input: InferInput,
  etag: string | undefined,
  deps: Deps,
  log: Log,
  claimTimeoutMs?: number,
): Promise<InferResult | ClaimedElsewhere> {
  const target = {
    fn: 'infer',
    container: CONTAINERS.preprocessed,
    name: paths.preprocessed(input.name),
    etag,
    upload: input.name,
  };
  return runClaimed(target, deps, log, () => handleInfer(input, deps, log), claimTimeoutMs);
}

/** A re-scored image that no longer needs review leaves the worklist. */
async function removeFlag(deps: Deps, name: string): Promise<void> {
  const head = await deps.store.head(CONTAINERS.flagged, paths.flagged(name));
  if (head !== undefined) await deps.store.deleteIfMatch(CONTAINERS.flagged, paths.flagged(name), head.etag);
}

function round(v: number, digits = 6): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
