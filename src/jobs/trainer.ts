/**
 * The trainer of a run (`triage train-job --run <id>`; the GPU job's entrypoint):
 *
 *   read runs/{runId}/manifest.json -> status running
 *   load the labeled images it names (pixels from preprocessed/, checked against the label's
 *     source SHA-256) and the base data; held-out images (manifest item.heldOut, plus the base
 *     data's test split) are never trained on
 *   train the candidate (validation split for early stopping, calibration and thresholds)
 *   score the candidate and the promoted model on the same held-out set; gate (src/jobs/gate.ts)
 *   save the candidate under models/{version}/ (saveModel), write runs/{runId}/report.json and plots
 *   promote with the registry's ETag-conditional promote() only if the gate passed
 *   status succeeded (promoted | not-promoted, with the reason)
 *
 * Any error marks the run failed (with the message) and is rethrown; models/current.json is only
 * ever written by the final promote().
 */
import type { Config } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import { SOURCE_SHA_KEY } from '../storage/records';
import type { Log } from '../handlers/types';
import { decodeNpy } from '../imaging/npy';
import { PROFILE_VERSIONS } from '../imaging/profiles';
import { initBackend } from '../ml/backend';
import { LabeledImages, count, manifestHash, slice, validate } from '../ml/data/dataset';
import { loadMnistPackage } from '../ml/data/mnistPackage';
import { buildModel } from '../ml/models';
import { train } from '../ml/train';
import { EvaluationReport, evaluateProbabilities, predictProbabilities, summarize } from '../ml/evaluate';
import { cardFieldsFromReport, loadModel, makeVersion, saveModel } from '../ml/modelStore';
import { confusionSpec, reliabilitySpec, renderSvgs, riskCoverageSpec } from '../ml/plots';
import { RegistryError, promote, readCurrent } from '../registry/registry';
import { GateDecision, HeldOutScores, decide, scoreHeldOut } from './gate';
import { ManifestItem, RetrainCard, RunManifest, readManifest } from './manifest';
import { RunError, RunStatus, isFinished, markFailed, readStatus, updateStatus } from './runs';
import { mapLimit } from '../util/mapLimit';

export interface TrainerDeps {
  config: Config;
  store: BlobStore;
  log: Log;
  now?: () => Date;
}

export interface TrainerOptions {
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
  };
  training: { epochsRun: number; bestEpoch: number; stoppedEarly: boolean; imagesPerSecond: number; history: { epoch: number; loss: number; accuracy: number; valLoss?: number; valAccuracy?: number; seconds: number }[] };
  candidate: { summary: Record<string, number | string | null>; heldOut: Omit<HeldOutScores, 'confidence' | 'correct'>; evaluation: EvaluationReport };
  promoted: (Omit<HeldOutScores, 'confidence' | 'correct'> & { version: string }) | null;
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
async function loadLabeled(store: BlobStore, items: readonly ManifestItem[], concurrency: number): Promise<{ loaded: Loaded[]; skipped: { name: string; reason: string }[] }> {
  const skipped: { name: string; reason: string }[] = [];
  const results = await mapLimit(items, concurrency, async (it): Promise<Loaded | undefined> => {
    const npy = await store.get(CONTAINERS.preprocessed, paths.preprocessed(it.name));
    if (npy === undefined) {
      skipped.push({ name: it.name, reason: `${CONTAINERS.preprocessed}/${paths.preprocessed(it.name)} does not exist` });
      return undefined;
    }
    const sha = npy.metadata[SOURCE_SHA_KEY];
    if (sha !== undefined && sha !== it.sha256) {
      skipped.push({ name: it.name, reason: `the image was re-uploaded since it was labeled (source sha256 ${sha.slice(0, 12)}, label for ${it.sha256.slice(0, 12)})` });
      return undefined;
    }
    const { data, shape } = decodeNpy(npy.data);
    const hwc: [number, number, number] | undefined =
      shape.length === 2 ? [shape[0] as number, shape[1] as number, 1] : shape.length === 3 ? [shape[0] as number, shape[1] as number, shape[2] as number] : undefined;
    if (hwc === undefined) {
      skipped.push({ name: it.name, reason: `unexpected pixel array shape [${shape.join(', ')}]` });
      return undefined;
    }
    return { name: it.name, cls: it.class, heldOut: it.heldOut, pixels: data, shape: hwc };
  });
  return { loaded: results.filter((r): r is Loaded => r !== undefined), skipped };
}

/** Packs images of one shape into LabeledImages over `classNames` (classes matched by name). */
function pack(parts: { images: LabeledImages | undefined; loaded: Loaded[] }, classNames: string[], shape: [number, number, number], source: string): LabeledImages {
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
      if (k === undefined) throw new Error(`base data class ${JSON.stringify(c)} is not one of the run's classes ${classNames.join(', ')}`);
      labels[i] = k;
      names.push(`${base.source}#${i}`);
    }
  }
  parts.loaded.forEach((l, j) => {
    const k = index.get(l.cls);
    if (k === undefined) throw new Error(`label class ${JSON.stringify(l.cls)} of ${l.name} is not one of the run's classes ${classNames.join(', ')}`);
    images.set(l.pixels, (nBase + j) * size);
    labels[nBase + j] = k;
    names.push(l.name);
  });
  return validate({ images, labels, shape, classNames, source, names });
}

const omitArrays = (s: HeldOutScores): Omit<HeldOutScores, 'confidence' | 'correct'> => {
  const { confidence: _c, correct: _k, ...rest } = s;
  return rest;
};

/** Trains, judges and (maybe) promotes the candidate of a queued run. Returns the final status. */
export async function runTrainJob(runId: string, deps: TrainerDeps, opts: TrainerOptions = {}): Promise<RunStatus> {
  const { store, config, log } = deps;
  const now = deps.now ?? (() => new Date());
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const lap = (k: string, since: number) => (timings[k] = Math.round(performance.now() - since));

  const manifest = await readManifest(store, runId);
  if (manifest === undefined) throw new RunError('no-such-run', `run ${runId} has no ${CONTAINERS.runs}/${paths.runManifest(runId)}`);
  const before = await readStatus(store, runId);
  if (before !== undefined && isFinished(before.value.state)) {
    throw new RunError('finished', `run ${runId} already ${before.value.state}; start a new run instead`);
  }
  await updateStatus(store, runId, (s) => ({ state: 'running', attempts: s.attempts + 1, progress: { phase: 'loading data' } }), now);

  try {
    return await trainAndJudge(manifest, deps, opts, now, t0, timings, lap);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error(`run ${runId} failed: ${message}`);
    await markFailed(store, runId, message, now).catch((e: unknown) => log.error(`run ${runId}: could not record the failure: ${String(e)}`));
    throw err;
  }
}

async function trainAndJudge(
  manifest: RunManifest,
  deps: TrainerDeps,
  opts: TrainerOptions,
  now: () => Date,
  t0: number,
  timings: Record<string, number>,
  lap: (k: string, since: number) => number,
): Promise<RunStatus> {
  const { store, config, log } = deps;
  const runId = manifest.runId;
  const plan = manifest.training;
  const classNames = manifest.classNames;

  const backend = await initBackend(config.backend, (m) => log.info(m));
  log.info(`run ${runId}: backend ${backend.name} (${backend.detail})`);

  // ---- data ----
  let t = performance.now();
  const { loaded, skipped } = await loadLabeled(store, manifest.labels.items, opts.concurrency ?? 16);
  let baseTrain: LabeledImages | undefined;
  let baseTest: LabeledImages | undefined;
  if (manifest.baseData.name === 'mnist') {
    const m = loadMnistPackage();
    const limit = manifest.baseData.limit;
    baseTrain = limit === undefined ? m.train : slice(m.train, 0, limit, `${m.train.source}[0:${limit}]`);
    baseTest = limit === undefined ? m.test : slice(m.test, 0, Math.ceil(limit / 4), `${m.test.source}[0:${Math.ceil(limit / 4)}]`);
  }
  const shape = baseTrain?.shape ?? loaded[0]?.shape;
  if (shape === undefined) throw new Error(`nothing to train on: none of the ${manifest.labels.items.length} labeled images could be loaded (${skipped.slice(0, 3).map((s) => `${s.name}: ${s.reason}`).join('; ')}) and the base data is none`);
  const odd = loaded.find((l) => l.shape.join('x') !== shape.join('x'));
  if (odd !== undefined) {
    throw new Error(
      `labeled image ${odd.name} is ${odd.shape.join('x')} but the run trains on ${shape.join('x')}${baseTrain !== undefined ? ` (the base data ${manifest.baseData.name} is ${shape.join('x')}: set RETRAIN_BASE_DATA=none for profile ${manifest.profile})` : ''}`,
    );
  }
  const labeledTrain = loaded.filter((l) => !l.heldOut);
  const labeledHeldOut = loaded.filter((l) => l.heldOut);
  const trainSet = pack({ images: baseTrain, loaded: labeledTrain }, classNames, shape, `run:${runId}:train`);
  const heldOut = pack({ images: baseTest, loaded: labeledHeldOut }, classNames, shape, `run:${runId}:held-out`);
  if (count(trainSet) < 2) throw new Error(`nothing to train on: ${count(trainSet)} training image(s) after holding out ${labeledHeldOut.length} (rule ${manifest.heldOut.rule}) and skipping ${skipped.length}`);
  if (count(heldOut) === 0) {
    throw new Error(`the held-out set is empty: none of the ${loaded.length} labeled images falls in it (${manifest.heldOut.rule}) and there is no base test data; label more images`);
  }
  for (const s of skipped) log.warn(`run ${runId}: skipped ${s.name}: ${s.reason}`);
  lap('loadDataMs', t);
  log.info(`run ${runId}: ${count(trainSet)} training images (${labeledTrain.length} labeled), ${count(heldOut)} held out (${labeledHeldOut.length} labeled), ${skipped.length} skipped`);

  // ---- train ----
  t = performance.now();
  await updateStatus(store, runId, () => ({ progress: { phase: 'training', epoch: 0, epochs: plan.epochs } }), now);
  const model = buildModel(plan.architecture, { inputShape: shape, classNames, seed: plan.modelSeed });
  const validationSplit = count(trainSet) >= 20 ? plan.validationSplit : 0;
  const result = await train(model, trainSet, {
    epochs: plan.epochs,
    batchSize: plan.batchSize,
    validationSplit,
    patience: validationSplit > 0 ? plan.patience : 0,
    seed: plan.seed,
    augment: plan.augment,
    learningRateDecay: plan.learningRateDecay,
    onEpoch: async (s) => {
      log.info(`run ${runId}: epoch ${s.epoch}/${s.epochs} loss ${s.loss.toFixed(4)} acc ${s.accuracy.toFixed(4)}${s.valLoss !== undefined ? ` val loss ${s.valLoss.toFixed(4)} val acc ${(s.valAccuracy ?? 0).toFixed(4)}` : ''}`);
      await updateStatus(store, runId, () => ({ progress: { phase: 'training', epoch: s.epoch, epochs: s.epochs } }), now);
    },
  });
  lap('trainMs', t);

  // ---- evaluate candidate and promoted model on the same held-out set ----
  t = performance.now();
  await updateStatus(store, runId, () => ({ progress: { phase: 'evaluating' } }), now);
  const truth = Array.from(heldOut.labels, (l) => classNames[l] as string);
  const probs = await predictProbabilities(model, heldOut);
  const valProbs = result.validation !== undefined ? { probs: await predictProbabilities(model, result.validation), labels: result.validation.labels } : undefined;
  const evaluation = evaluateProbabilities({ probs, labels: heldOut.labels, source: heldOut.source }, classNames, valProbs, { targetSelectiveError: plan.targetSelectiveError });
  const version = makeVersion(now());
  const candidateScores = scoreHeldOut(probs, classNames, truth, evaluation.calibration.temperature, evaluation.selective?.threshold ?? null, version);

  const current = await readCurrent(store);
  let promotedScores: HeldOutScores | undefined;
  let incompatible: string | undefined;
  if (current !== undefined) {
    const old = await loadModel(store, current.value.version);
    try {
      const [h, w, c] = old.card.inputShape;
      if ([h, w, c].join('x') !== shape.join('x')) {
        incompatible = `the promoted model ${current.value.version} takes ${old.card.inputShape.join('x')} inputs, the held-out images are ${shape.join('x')}`;
      } else {
        const oldProbs = await predictProbabilities(old.model, { ...heldOut, classNames: old.card.classNames });
        promotedScores = scoreHeldOut(oldProbs, old.card.classNames, truth, old.card.temperature, old.card.thresholds.selective?.threshold ?? null, current.value.version);
      }
    } finally {
      old.model.dispose();
    }
  }
  const gate: GateDecision =
    incompatible !== undefined
      ? { ...decide(candidateScores, undefined, manifest.gate.margin), promote: false, reason: `cannot compare: ${incompatible}` }
      : decide(candidateScores, promotedScores, manifest.gate.margin);
  lap('evaluateMs', t);

  // ---- save the candidate ----
  t = performance.now();
  const card: RetrainCard = {
    version,
    createdAt: now().toISOString(),
    architecture: plan.architecture,
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion, detail: backend.detail },
    data: {
      source: `run:${runId} (${manifest.baseData.description}; ${labeledTrain.length} labeled images)`,
      manifestHash: manifestHash(trainSet),
      trainImages: count(result.trainPart),
      validationImages: result.validation !== undefined ? count(result.validation) : 0,
      testImages: count(heldOut),
      testSource: `held-out (${manifest.heldOut.rule}${baseTest !== undefined ? ` + ${baseTest.source}` : ''})`,
    },
    preprocessing: { profile: manifest.profile, version: PROFILE_VERSIONS[manifest.profile as keyof typeof PROFILE_VERSIONS] ?? 'unknown' },
    classNames: [...classNames],
    inputShape: shape,
    training: {
      ...result.options,
      modelSeed: plan.modelSeed,
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      imagesPerSecond: result.imagesPerSecond,
      history: result.history.map((e) => ({ epoch: e.epoch, loss: e.loss, accuracy: e.accuracy, valLoss: e.valLoss, valAccuracy: e.valAccuracy, seconds: e.seconds })),
    },
    ...cardFieldsFromReport(evaluation),
    run: { id: runId, manifest: `${CONTAINERS.runs}/${paths.runManifest(runId)}` },
  };
  await saveModel(store, model, card);
  model.dispose();
  await updateStatus(store, runId, () => ({ candidateVersion: version, progress: { phase: 'reporting' } }), now);
  lap('saveMs', t);

  // ---- plots ----
  t = performance.now();
  const plots: string[] = [];
  let plotsError: string | undefined;
  if (opts.plots !== false) {
    try {
      const files = ['confusion.svg', 'risk-coverage.svg', 'reliability.svg'];
      const svgs = await renderSvgs([confusionSpec(evaluation), riskCoverageSpec(evaluation), reliabilitySpec(evaluation)]);
      for (const [i, f] of files.entries()) {
        await store.put(CONTAINERS.runs, paths.runFile(runId, f), svgs[i] ?? '', { contentType: 'image/svg+xml' });
        plots.push(`${CONTAINERS.runs}/${paths.runFile(runId, f)}`);
      }
    } catch (err) {
      plotsError = err instanceof Error ? err.message : String(err);
      log.warn(`run ${runId}: plots not rendered: ${plotsError}`);
    }
  }
  lap('plotsMs', t);

  // ---- promote (ETag-conditional on the current.json the gate compared against) ----
  t = performance.now();
  let promoted = false;
  let reason = gate.reason;
  if (gate.promote) {
    try {
      await promote(store, version, { by: `retrain:${runId}`, reason: `run ${runId}: ${gate.reason}`, ifEtag: current?.etag ?? '', now });
      promoted = true;
    } catch (err) {
      if (!(err instanceof RegistryError && err.code === 'conflict')) throw err;
      reason = `passed the gate, but models/current.json changed while the run judged it (${err.message}); start a new run to compare with the new model`;
    }
  }
  lap('promoteMs', t);
  timings.totalMs = Math.round(performance.now() - t0);

  const report: RunReport = {
    runId,
    candidateVersion: version,
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion, detail: backend.detail },
    data: {
      classNames,
      shape,
      train: count(result.trainPart),
      validation: result.validation !== undefined ? count(result.validation) : 0,
      heldOut: { total: count(heldOut), labeled: labeledHeldOut.length, base: baseTest !== undefined ? count(baseTest) : 0 },
      labeled: { total: loaded.length, train: labeledTrain.length, heldOut: labeledHeldOut.length },
      base: manifest.baseData.description,
      skipped,
    },
    training: {
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      stoppedEarly: result.stoppedEarly,
      imagesPerSecond: result.imagesPerSecond,
      history: card.training?.history ?? [],
    },
    candidate: { summary: summarize(evaluation), heldOut: omitArrays(candidateScores), evaluation },
    promoted: promotedScores !== undefined && current !== undefined ? { ...omitArrays(promotedScores), version: current.value.version } : null,
    gate,
    promotion: { promoted, reason },
    plots,
    ...(plotsError !== undefined ? { plotsError } : {}),
    timings,
  };
  await store.putJson(CONTAINERS.runs, paths.runReport(runId), report);
  log.info(`run ${runId}: ${promoted ? 'promoted' : 'not promoted'} ${version}: ${reason}`);

  return updateStatus(
    store,
    runId,
    () => ({
      state: 'succeeded',
      outcome: promoted ? 'promoted' : 'not-promoted',
      reason,
      candidateVersion: version,
      progress: { phase: 'done' },
      summary: {
        candidateAccuracy: candidateScores.accuracy,
        promotedAccuracy: promotedScores?.accuracy ?? null,
        candidateSelectiveError: candidateScores.selective.risk,
        promotedSelectiveErrorAtSameCoverage: gate.selectiveError.promotedAtSameCoverage,
        coverage: candidateScores.selective.coverage,
        heldOutImages: count(heldOut),
        trainImages: count(result.trainPart),
      },
    }),
    now,
  );
}

