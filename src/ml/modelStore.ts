/**
 * Saving and loading models: a tfjs `io.IOHandler` over Blob Storage (and one over a local folder).
 *
 *   models/{version}/model.json   topology + weights manifest (tfjs layers format)
 *   models/{version}/weights.bin  all weights, one shard
 *   models/{version}/card.json    the model card (written last: a version with a card is complete)
 *   models/current.json           { "version": "..." }: the promoted model (written by the registry)
 *
 * Versions are immutable: saving over an existing version fails.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { EvaluationReport } from './evaluate';
import { compileModel } from './models';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const CARD_JSON = 'card.json';

/** Everything a consumer of a model needs to know besides its weights. */
export interface ModelCard {
  version: string;
  createdAt: string;
  /** Architecture name (cnn, mlp, peer) or a free-form description. */
  architecture: string;
  backend: { name: string; tfjsVersion: string; detail?: string };
  /** What it was trained on. */
  data: {
    source: string;
    manifestHash: string;
    trainImages: number;
    validationImages: number;
    testImages?: number;
    testSource?: string;
    /** The patient rule the validation and test splits followed (folders with a group pattern). */
    grouping?: { pattern: string; groups: number; unmatched: number; validationGroups: number };
    /** Files of the folder the preprocessing rejected. */
    skipped?: number;
  };
  /** Preprocessing every input must go through (imaging library profile) and its version. */
  preprocessing: { profile: string; version: string };
  classNames: string[];
  /** [H, W, C]. */
  inputShape: [number, number, number];
  training?: {
    epochs: number;
    epochsRun: number;
    bestEpoch: number;
    batchSize: number;
    validationSplit: number;
    patience: number;
    seed: number;
    modelSeed: number;
    augment: {
      shift?: number;
      flip?: boolean;
      rotate?: number;
      scale?: number;
      brightness?: number;
      contrast?: number;
    };
    learningRateDecay: number;
    classWeights?: number[];
    imagesPerSecond: number;
    history: Array<{
      epoch: number;
      loss: number;
      accuracy: number;
      valLoss?: number;
      valAccuracy?: number;
      seconds: number;
    }>;
  };
  /** Test figures (see evaluate.summarize); free-form numbers. */
  metrics: Record<string, number | string | null>;
  /** Divide log-probabilities by this before softmax to get calibrated confidences (fitted on validation data). */
  temperature: number;
  /** Chosen on validation data, in calibrated-confidence space. */
  thresholds: {
    /** Auto-accept a prediction when calibrated confidence >= threshold (null: review everything). */
    selective?: {
      targetError: number;
      threshold: number | null;
      validationCoverage: number;
      /** Present when no threshold reaches the target error on validation data: says so, and what follows. */
      unreached?: string;
    };
    /** Two-class models: flag for review when calibrated p(positive) >= threshold. */
    screening?: {
      positiveClass: string;
      targetSensitivity: number;
      threshold: number;
      validationSpared: number;
      /** On the validation data (patient-held-out for grouped data): AUROC, and sensitivity/specificity at the threshold and at 0.5; specificity is the share of negative studies cleared without review. */
      validation?: {
        auroc: number;
        sensitivity: number;
        specificity: number;
        atHalf: { sensitivity: number; specificity: number };
        positives: number;
        negatives: number;
      };
    };
  };
}

/** Card fields derived from an evaluation report. */
export function cardFieldsFromReport(r: EvaluationReport): Pick<ModelCard, 'metrics' | 'temperature' | 'thresholds'> {
  return {
    metrics: {
      accuracy: r.accuracy,
      loss: r.loss,
      ece: r.calibration.eceBefore,
      eceCalibrated: r.calibration.eceAfter,
      aurc: r.aurc,
      testImages: r.n,
      ...(r.selective ? { selectiveCoverage: r.selective.test.coverage, selectiveRisk: r.selective.test.risk } : {}),
      ...(r.screening
        ? {
            screeningSensitivity: r.screening.test.sensitivity,
            screeningSpecificity: r.screening.test.specificity,
            screeningSpared: r.screening.test.spared,
            auroc: r.screening.test.auroc,
          }
        : {}),
    },
    temperature: r.calibration.temperature,
    thresholds: {
      ...(r.selective
        ? {
            selective: {
              targetError: r.selective.targetError,
              threshold: r.selective.threshold,
              validationCoverage: r.selective.coverage,
              ...(r.selective.threshold === null ? { unreached: selectiveUnreached(r) } : {}),
            },
          }
        : {}),
      ...(r.screening ? { screening: screeningCardFields(r.screening) } : {}),
    },
  };
}

/** What a card and the output say when no confidence threshold reaches the target error on validation data. */
export function selectiveUnreached(r: Pick<EvaluationReport, 'selective' | 'screening'>): string {
  const target = `${(100 * (r.selective?.targetError ?? 0)).toFixed(2)}%`;
  return `no confidence threshold reaches the target error of ${target} on validation data: ${
    r.screening ? "not this model's review rule (the screening threshold is)" : 'every prediction is flagged for review'
  }`;
}

function screeningCardFields(
  s: NonNullable<EvaluationReport['screening']>,
): NonNullable<ModelCard['thresholds']['screening']> {
  const v = s.validation;
  return {
    positiveClass: s.positiveClass,
    targetSensitivity: s.targetSensitivity,
    threshold: s.threshold,
    validationSpared: v?.spared ?? NaN,
    ...(v
      ? {
          validation: {
            auroc: v.auroc,
            sensitivity: v.sensitivity,
            specificity: v.specificity,
            atHalf: { sensitivity: v.atHalf.sensitivity, specificity: v.atHalf.specificity },
            positives: v.positives,
            negatives: v.negatives,
          },
        }
      : {}),
  };
}

/** A sortable, unique-enough version name: UTC timestamp plus a random suffix, e.g. 20250101T120000Z-3f9a. */
export function makeVersion(
  now: Date = new Date(),
  suffix: string = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0'),
): string {
  return `${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${suffix}`;
}

const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkVersion(version: string): string {
  if (!VERSION_RE.test(version) || version === 'current') {
    throw new Error(
      `invalid model version ${JSON.stringify(version)}: use letters, digits, '.', '_' and '-' (not "current")`,
    );
  }
  return version;
}

/** Minimal byte storage the handler writes through: a blob prefix or a folder. */
interface FileSink {
  describe: string;
  write(file: string, data: Buffer, contentType: string): Promise<void>;
  read(file: string): Promise<Buffer | undefined>;
}

function weightsToBuffer(w: tf.io.WeightData | undefined): Buffer {
  if (w === undefined) return Buffer.alloc(0);
  const ab = Array.isArray(w) ? tf.io.concatenateArrayBuffers(w) : w;
  return Buffer.from(ab);
}

function handlerFor(sink: FileSink): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) throw new Error('binary model topologies are not supported');
      const weights = weightsToBuffer(artifacts.weightData);
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
        ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
      };
      // Weights first: a model.json never points at weights that are not there yet.
      await sink.write(WEIGHTS_BIN, weights, 'application/octet-stream');
      await sink.write(MODEL_JSON, Buffer.from(JSON.stringify(modelJson)), 'application/json');
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const raw = await sink.read(MODEL_JSON);
      if (raw === undefined) throw new Error(`no ${MODEL_JSON} at ${sink.describe}`);
      const modelJson = JSON.parse(raw.toString('utf8')) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: Buffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const file = p.replace(/^\.\//, '');
            if (file.includes('/') || file.includes('..')) throw new Error(`weights path ${p} leaves ${sink.describe}`);
            const b = await sink.read(file);
            if (b === undefined) throw new Error(`weights file ${file} is missing at ${sink.describe}`);
            buffers.push(b);
          }
        }
        const all = Buffer.concat(buffers);
        return [specs, all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength)];
      });
    },
  };
}

/** IOHandler for models/{version}/ in Blob Storage. Writes only blobs that do not exist yet. */
export function blobModelHandler(store: BlobStore, version: string): tf.io.IOHandler {
  checkVersion(version);
  return handlerFor({
    describe: `${CONTAINERS.models}/${paths.modelDir(version)}`,
    async write(file, data, contentType) {
      const r = await store.put(CONTAINERS.models, paths.modelFile(version, file), data, {
        contentType,
        ifNoneExists: true,
      });
      if (!r.written)
        throw new Error(`model version ${version} already has ${file}: versions are immutable, pick a new version`);
    },
    async read(file) {
      return (await store.get(CONTAINERS.models, paths.modelFile(version, file)))?.data;
    },
  });
}

/** IOHandler for a local folder holding model.json and weights.bin (and card.json beside them). */
export function dirModelHandler(dir: string): tf.io.IOHandler {
  return handlerFor({
    describe: dir,
    async write(file, data) {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, file), data);
    },
    async read(file) {
      try {
        return await readFile(join(dir, file));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
  });
}

/** Saves model and card under models/{card.version}/ (card last). Fails if the version exists. */
export async function saveModel(
  store: BlobStore,
  model: tf.LayersModel,
  card: ModelCard,
): Promise<{ version: string }> {
  const version = checkVersion(card.version);
  if ((await store.head(CONTAINERS.models, paths.modelCard(version))) !== undefined) {
    throw new Error(`model version ${version} already exists in ${CONTAINERS.models}: versions are immutable`);
  }
  await model.save(blobModelHandler(store, version));
  const r = await store.putJson(CONTAINERS.models, paths.modelCard(version), card, { ifNoneExists: true });
  if (!r.written) throw new Error(`model version ${version} got a card from another writer meanwhile`);
  return { version };
}

/** The version models/current.json points at, or undefined when no model has been promoted. */
export async function currentVersion(store: BlobStore): Promise<string | undefined> {
  const cur = await store.getJson<{ version?: unknown }>(CONTAINERS.models, paths.currentModel());
  if (cur === undefined) return undefined;
  if (typeof cur.value.version !== 'string')
    throw new Error(`${CONTAINERS.models}/${paths.currentModel()} has no "version" string`);
  return checkVersion(cur.value.version);
}

async function resolveVersion(store: BlobStore, version: string): Promise<string> {
  if (version !== 'current') return checkVersion(version);
  const v = await currentVersion(store);
  if (v === undefined)
    throw new Error(`no model is promoted yet: ${CONTAINERS.models}/${paths.currentModel()} does not exist`);
  return v;
}

/** The card of a version ('current' = the promoted one). */
export async function readCard(store: BlobStore, version: string): Promise<ModelCard> {
  const v = await resolveVersion(store, version);
  const card = await store.getJson<ModelCard>(CONTAINERS.models, paths.modelCard(v));
  if (card === undefined)
    throw new Error(
      `model version ${v} has no ${CONTAINERS.models}/${paths.modelCard(v)} (missing or incompletely saved)`,
    );
  return card.value;
}

/** Loads a version ('current' = the promoted one) with its card; the model comes back compiled. */
export async function loadModel(
  store: BlobStore,
  version: string,
): Promise<{ model: tf.LayersModel; card: ModelCard }> {
  const v = await resolveVersion(store, version);
  const card = await readCard(store, v);
  const model = await tf.loadLayersModel(blobModelHandler(store, v));
  compileModel(model);
  return { model, card };
}

/** Saves model.json, weights.bin and card.json into a folder. */
export async function saveModelToDir(dir: string, model: tf.LayersModel, card: ModelCard): Promise<void> {
  await model.save(dirModelHandler(dir));
  await writeFile(join(dir, CARD_JSON), JSON.stringify(card, null, 2) + '\n');
}

/** Loads a model saved by saveModelToDir (card optional for models saved elsewhere). */
export async function loadModelFromDir(dir: string): Promise<{ model: tf.LayersModel; card: ModelCard | undefined }> {
  const model = await tf.loadLayersModel(dirModelHandler(dir));
  compileModel(model);
  let card: ModelCard | undefined;
  try {
    card = JSON.parse(await readFile(join(dir, CARD_JSON), 'utf8')) as ModelCard;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return { model, card };
}
