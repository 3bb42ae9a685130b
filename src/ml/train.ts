/**
 * The training loop: seeded shuffling and augmentation, a held-out validation split, early stopping
 * on validation loss with the best weights restored, and progress callbacks per batch and per epoch.
 * Reproducible: the same model seed, data and options give the same weights on the same backend.
 */
import * as tf from '@tensorflow/tfjs';
import { LabeledImages, count, imageSize, mulberry32, permutation, splitValidation } from './data/dataset';
import { reseedDropout } from './models';
import { predictProbabilities } from './evaluate';
import { nllAtTemperature, topPrediction } from './calibration';

export interface AugmentOptions {
  /** Random translation by up to this many pixels in x and y (zero fill). Default 0. */
  shift?: number;
  /** Random horizontal flip with probability 1/2 (garments yes, digits no). Default false. */
  flip?: boolean;
  /** Random rotation about the centre by up to this many degrees (bilinear, zero fill). Default 0. */
  rotate?: number;
  /** Random zoom by a factor in [1 - scale, 1 + scale]. Default 0. */
  scale?: number;
  /**
   * Elastic distortion (Simard, Steinkraus and Platt, 2003): a per-pixel displacement field of
   * uniform noise in [-1, 1], smoothed by a Gaussian of `elasticSigma` pixels and scaled by this
   * factor, applied together with the affine map. 34 with sigma 4 (the paper's values for 28x28
   * digits) moves pixels by about 1.4 px rms. Default 0 (off).
   */
  elastic?: number;
  /** Smoothness of the elastic field, in pixels. Default 4. */
  elasticSigma?: number;
  /** Random brightness: add an offset drawn from [-b, b] to every pixel of an image. Default 0. */
  brightness?: number;
  /** Random contrast: scale an image's deviations from its mean by a factor in [1 - c, 1 + c]. Default 0. */
  contrast?: number;
}

export interface EpochStats {
  /** 1-based. */
  epoch: number;
  epochs: number;
  /** Mean training loss and accuracy over the epoch's batches (dropout and augmentation on). */
  loss: number;
  accuracy: number;
  /** On the validation split; undefined without one. */
  valLoss?: number;
  valAccuracy?: number;
  images: number;
  seconds: number;
  /** Training images per second of this epoch (validation time excluded). */
  imagesPerSecond: number;
  learningRate: number;
}

export interface BatchStats {
  epoch: number;
  batch: number;
  batches: number;
  /** Running means over this epoch so far. */
  loss: number;
  accuracy: number;
  imagesPerSecond: number;
}

export interface TrainOptions {
  /** Default 10. */
  epochs?: number;
  /** Default 64. */
  batchSize?: number;
  /** Share of `data` held out for validation (seeded split), used for early stopping. Default 0.1; 0 disables. Ignored when `validation` is given. */
  validationSplit?: number;
  /** Explicit validation data instead of a split of `data`. */
  validation?: LabeledImages;
  /** Stop after this many epochs without a lower validation loss, restoring the best weights. Default 3; 0 disables. */
  patience?: number;
  /** Seed of the validation split, the shuffles, the augmentation and the dropout masks. Default 1. */
  seed?: number;
  /** Default: none. */
  augment?: AugmentOptions;
  /** Multiply the learning rate by this after every epoch. Default 1 (constant). */
  learningRateDecay?: number;
  /**
   * Loss weight of each class, in class order (e.g. balanced: n / (classes * n_c)). The one-hot
   * targets are scaled by the weight, which scales that image's cross-entropy and its gradient.
   * Default: every class 1. Validation loss stays unweighted.
   */
  classWeights?: readonly number[];
  /**
   * Keep an exponential moving average of the weights with this decay per step (warmed up as
   * min(decay, (1 + t) / (10 + t))), validate it, and end with it (Polyak averaging). Default 0: off.
   */
  weightAverage?: number;
  onEpoch?: (stats: EpochStats) => void | Promise<void>;
  onBatch?: (stats: BatchStats) => void;
}

export interface TrainResult {
  history: EpochStats[];
  /** 1-based epoch whose weights the model holds at the end. */
  bestEpoch: number;
  stoppedEarly: boolean;
  /** The data actually trained on and the validation data (for calibration and thresholds). */
  trainPart: LabeledImages;
  validation: LabeledImages | undefined;
  /** Mean training throughput over all epochs. */
  imagesPerSecond: number;
  options: {
    epochs: number;
    batchSize: number;
    validationSplit: number;
    patience: number;
    seed: number;
    augment: AugmentOptions;
    learningRateDecay: number;
    weightAverage: number;
    classWeights?: number[];
  };
}

/** Balanced class weights n / (classes * n_c) of a label set (a class without images gets 0). */
export function balancedClassWeights(labels: ArrayLike<number>, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i] as number] = (counts[labels[i] as number] ?? 0) + 1;
  return counts.map((c) => (c === 0 ? 0 : labels.length / (classes * c)));
}

/** Brightness and contrast jitter of one image in place, clamped to [0, 1]. */
function photometric(img: Float32Array, brightness: number, contrast: number, rnd: () => number): void {
  const offset = (rnd() * 2 - 1) * brightness;
  const factor = 1 + (rnd() * 2 - 1) * contrast;
  let mean = 0;
  if (contrast !== 0) {
    for (let i = 0; i < img.length; i++) mean += img[i] as number;
    mean /= Math.max(1, img.length);
  }
  for (let i = 0; i < img.length; i++) {
    const v = ((img[i] as number) - mean) * factor + mean + offset;
    img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

/** Normalised 1-D Gaussian taps for `sigma`, radius ceil(3 sigma). */
function gaussianTaps(sigma: number): Float32Array {
  const r = Math.max(1, Math.ceil(3 * sigma));
  const taps = new Float32Array(2 * r + 1);
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += taps[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < taps.length; i++) taps[i] = (taps[i] as number) / sum;
  return taps;
}

/** One pass of a separable blur over an h x w field: along rows (dx = 1) or columns (dx = w); zero outside. */
function blurPass(
  src: Float32Array,
  dst: Float32Array,
  h: number,
  w: number,
  taps: Float32Array,
  alongRows: boolean,
): void {
  const r = (taps.length - 1) / 2;
  const stride = alongRows ? 1 : w;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const pos = alongRows ? x : y;
      const len = alongRows ? w : h;
      let acc = 0;
      for (let k = Math.max(-r, -pos); k <= Math.min(r, len - 1 - pos); k++)
        acc += (taps[k + r] as number) * (src[y * w + x + k * stride] as number);
      dst[y * w + x] = acc;
    }
}

/** Separable Gaussian blur of an h x w field in place (zero outside), using `tmp` as scratch. */
function blur(field: Float32Array, h: number, w: number, taps: Float32Array, tmp: Float32Array): void {
  blurPass(field, tmp, h, w, taps, true);
  blurPass(tmp, field, h, w, taps, false);
}

/**
 * Augments each image of a batch in place (zero fill outside the image): integer shifts and flips
 * exactly; with rotation, zoom or elastic distortion, a random affine map (rotation, zoom,
 * sub-pixel shift, flip) plus the elastic displacement, sampled bilinearly in one pass.
 */
export function augmentBatch(
  batch: Float32Array,
  n: number,
  shape: readonly [number, number, number],
  opts: AugmentOptions,
  rnd: () => number,
): void {
  const [h, w, ch] = shape;
  const shift = opts.shift ?? 0;
  const rotate = opts.rotate ?? 0;
  const zoom = opts.scale ?? 0;
  const elastic = opts.elastic ?? 0;
  const brightness = opts.brightness ?? 0;
  const contrast = opts.contrast ?? 0;
  const size = h * w * ch;
  if (brightness !== 0 || contrast !== 0) {
    const geometric = { ...opts, brightness: 0, contrast: 0 };
    augmentBatch(batch, n, shape, geometric, rnd);
    for (let b = 0; b < n; b++) photometric(batch.subarray(b * size, (b + 1) * size), brightness, contrast, rnd);
    return;
  }
  if (shift === 0 && !opts.flip && rotate === 0 && zoom === 0 && elastic === 0) return;
  const tmp = new Float32Array(size);
  const resample = rotate !== 0 || zoom !== 0 || elastic !== 0;
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const taps = elastic !== 0 ? gaussianTaps(opts.elasticSigma ?? 4) : undefined;
  const fieldX = new Float32Array(elastic !== 0 ? h * w : 0);
  const fieldY = new Float32Array(elastic !== 0 ? h * w : 0);
  const scratch = new Float32Array(elastic !== 0 ? h * w : 0);
  for (let b = 0; b < n; b++) {
    const img = batch.subarray(b * size, (b + 1) * size);
    tmp.fill(0);
    if (resample) {
      const angle = ((rnd() * 2 - 1) * rotate * Math.PI) / 180;
      const s = 1 + (rnd() * 2 - 1) * zoom;
      const dx = (rnd() * 2 - 1) * shift;
      const dy = (rnd() * 2 - 1) * shift;
      const flip = opts.flip === true && rnd() < 0.5;
      if (taps !== undefined) {
        for (let i = 0; i < h * w; i++) {
          fieldX[i] = rnd() * 2 - 1;
          fieldY[i] = rnd() * 2 - 1;
        }
        blur(fieldX, h, w, taps, scratch);
        blur(fieldY, h, w, taps, scratch);
      }
      // Inverse map: output (x, y) samples the source at R(-angle) ((x, y) - c - d) / s + c,
      // displaced by the elastic field at (x, y).
      const cos = Math.cos(angle) / s;
      const sin = Math.sin(angle) / s;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const ox = (flip ? w - 1 - x : x) - cx - dx;
          const oy = y - cy - dy;
          let sx = cos * ox + sin * oy + cx;
          let sy = -sin * ox + cos * oy + cy;
          if (taps !== undefined) {
            sx += elastic * (fieldX[y * w + x] as number);
            sy += elastic * (fieldY[y * w + x] as number);
          }
          const x0 = Math.floor(sx);
          const y0 = Math.floor(sy);
          if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) continue;
          const fx = sx - x0;
          const fy = sy - y0;
          for (let c = 0; c < ch; c++) {
            const at = (yy: number, xx: number) =>
              yy < 0 || yy >= h || xx < 0 || xx >= w ? 0 : (img[(yy * w + xx) * ch + c] as number);
            tmp[(y * w + x) * ch + c] =
              (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
              fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
          }
        }
      }
      img.set(tmp);
      continue;
    }
    const dx = shift === 0 ? 0 : Math.floor(rnd() * (2 * shift + 1)) - shift;
    const dy = shift === 0 ? 0 : Math.floor(rnd() * (2 * shift + 1)) - shift;
    const flip = opts.flip === true && rnd() < 0.5;
    if (dx === 0 && dy === 0 && !flip) continue;
    for (let y = 0; y < h; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= h) continue;
      for (let x = 0; x < w; x++) {
        const fx = flip ? w - 1 - x : x;
        const sx = fx - dx;
        if (sx < 0 || sx >= w) continue;
        for (let c = 0; c < ch; c++) tmp[(y * w + x) * ch + c] = img[(sy * w + sx) * ch + c] as number;
      }
    }
    img.set(tmp);
  }
}

/** Exponential moving average of a model's weights, updated after each training step. */
class WeightAverage {
  private avg: tf.Tensor[];
  private updates = 0;
  constructor(
    private readonly model: tf.LayersModel,
    private readonly decay: number,
  ) {
    this.avg = model.getWeights().map((w) => tf.keep(w.clone()));
  }
  update(): void {
    const d = Math.min(this.decay, (1 + this.updates) / (10 + this.updates));
    this.updates++;
    const live = this.model.getWeights();
    const next = tf.tidy(() =>
      this.avg.map((a, i) => tf.keep(tf.add(tf.mul(a, d), tf.mul(live[i] as tf.Tensor, 1 - d)))),
    );
    tf.dispose(this.avg);
    this.avg = next;
  }
  /** Runs `f` with the averaged weights in the model, then puts the trained ones back. */
  async withAverage<T>(f: () => Promise<T>): Promise<T> {
    const live = this.model.getWeights().map((w) => w.clone());
    this.model.setWeights(this.avg);
    try {
      return await f();
    } finally {
      this.model.setWeights(live);
      tf.dispose(live);
    }
  }
  /** Leaves the averaged weights in the model. */
  install(): void {
    this.model.setWeights(this.avg);
  }
  dispose(): void {
    tf.dispose(this.avg);
  }
}

function setLearningRate(model: tf.LayersModel, lr: number): void {
  const opt = model.optimizer as unknown as { learningRate?: number };
  if (typeof opt.learningRate === 'number') opt.learningRate = lr;
}

function getLearningRate(model: tf.LayersModel): number {
  const lr = (model.optimizer as unknown as { learningRate?: unknown }).learningRate;
  return typeof lr === 'number' ? lr : NaN;
}

/** The options of a run with their defaults, checked against the data and the model. */
type Settings = TrainResult['options'];

function settingsOf(model: tf.LayersModel, data: LabeledImages, opts: TrainOptions): Settings {
  const epochs = opts.epochs ?? 10;
  const batchSize = opts.batchSize ?? 64;
  const averageDecay = opts.weightAverage ?? 0;
  const classWeights = opts.classWeights === undefined ? undefined : [...opts.classWeights];
  if (
    classWeights !== undefined &&
    (classWeights.length !== data.classNames.length || classWeights.some((w) => !(w >= 0 && Number.isFinite(w))))
  ) {
    throw new RangeError(
      `classWeights must be ${data.classNames.length} finite non-negative numbers, got [${classWeights.join(', ')}]`,
    );
  }
  if (!(averageDecay >= 0 && averageDecay < 1))
    throw new RangeError(`weightAverage must be in [0, 1), got ${averageDecay}`);
  const validationSplit = opts.validation ? 0 : (opts.validationSplit ?? 0.1);
  if (!(epochs >= 1) || !(batchSize >= 1)) throw new RangeError('epochs and batchSize must be at least 1');
  if (model.optimizer === undefined) throw new Error('the model is not compiled: call compileModel() first');
  return {
    epochs,
    batchSize,
    validationSplit,
    patience: opts.patience ?? 3,
    seed: opts.seed ?? 1,
    augment: opts.augment ?? {},
    learningRateDecay: opts.learningRateDecay ?? 1,
    weightAverage: averageDecay,
    ...(classWeights ? { classWeights } : {}),
  };
}

/** One-hot targets of a batch's labels, scaled by their class weights when there are any. */
function batchTargets(labels: Int32Array, classes: number, classWeights: readonly number[] | undefined): tf.Tensor {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat();
    if (classWeights === undefined) return oneHot;
    const w = Float32Array.from(labels, (l) => classWeights[l] as number);
    return tf.mul(oneHot, tf.tensor2d(w, [labels.length, 1]));
  });
}

/** What one epoch's training steps share: the model, the data trained on, the settings and the running state. */
interface Loop {
  model: tf.LayersModel;
  trainPart: LabeledImages;
  s: Settings;
  rnd: () => number;
  /** Steps taken so far (the dropout seed of the next one). */
  step: number;
  batchImages: Float32Array;
  batchLabels: Int32Array;
  average: WeightAverage | undefined;
  onBatch: TrainOptions['onBatch'];
}

/** One epoch of training steps over a seeded shuffle; its stats without validation. */
async function trainEpoch(loop: Loop, epoch: number, learningRate: number): Promise<EpochStats> {
  const { model, trainPart, s, batchImages, batchLabels } = loop;
  const n = count(trainPart);
  const size = imageSize(trainPart);
  const order = permutation(n, s.seed * 1009 + epoch);
  const batches = Math.ceil(n / s.batchSize);
  let lossSum = 0;
  let accSum = 0;
  let seen = 0;
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    const start = b * s.batchSize;
    const m = Math.min(s.batchSize, n - start);
    for (let k = 0; k < m; k++) {
      const i = order[start + k] as number;
      batchImages.set(trainPart.images.subarray(i * size, (i + 1) * size), k * size);
      batchLabels[k] = trainPart.labels[i] as number;
    }
    augmentBatch(batchImages, m, trainPart.shape, s.augment, loop.rnd);
    reseedDropout(model, s.seed, loop.step++);
    const x = tf.tensor4d(batchImages.subarray(0, m * size), [m, ...trainPart.shape]);
    const y = batchTargets(batchLabels.subarray(0, m), trainPart.classNames.length, s.classWeights);
    let out: number | number[];
    try {
      out = await model.trainOnBatch(x, y);
    } finally {
      x.dispose();
      y.dispose();
    }
    loop.average?.update();
    const [loss, acc] = Array.isArray(out) ? out : [out, NaN];
    lossSum += (loss ?? NaN) * m;
    accSum += (acc ?? NaN) * m;
    seen += m;
    loop.onBatch?.({
      epoch,
      batch: b + 1,
      batches,
      loss: lossSum / seen,
      accuracy: accSum / seen,
      imagesPerSecond: seen / Math.max(1e-9, (performance.now() - t0) / 1000),
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    epoch,
    epochs: s.epochs,
    loss: lossSum / seen,
    accuracy: accSum / seen,
    images: seen,
    seconds,
    imagesPerSecond: seen / Math.max(1e-9, seconds),
    learningRate,
  };
}

/** Loss (unweighted, temperature 1) and accuracy of `probs` against the validation labels. */
function validationFigures(
  probs: Float32Array,
  validation: LabeledImages,
  classes: number,
): { valLoss: number; valAccuracy: number } {
  const { predicted } = topPrediction(probs, classes);
  let ok = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === validation.labels[i]) ok++;
  return {
    valLoss: nllAtTemperature(probs, validation.labels, classes, 1),
    valAccuracy: ok / Math.max(1, predicted.length),
  };
}

/**
 * Trains a compiled model (see buildModel/compileModel) on `data`. The model must output
 * `data.classNames.length` classes.
 */
export async function train(model: tf.LayersModel, data: LabeledImages, opts: TrainOptions = {}): Promise<TrainResult> {
  const s = settingsOf(model, data, opts);
  const split =
    opts.validation === undefined && s.validationSplit > 0
      ? splitValidation(data, s.validationSplit, s.seed)
      : { train: data, validation: opts.validation };
  const trainPart = split.train;
  const validation = split.validation;
  if (count(trainPart) === 0) throw new Error(`${data.source}: no images to train on`);
  const size = imageSize(trainPart);
  const history: EpochStats[] = [];
  let best = { loss: Infinity, epoch: 0, weights: undefined as tf.Tensor[] | undefined };
  let stoppedEarly = false;
  let lr = getLearningRate(model);
  const average = s.weightAverage > 0 ? new WeightAverage(model, s.weightAverage) : undefined;
  const loop: Loop = {
    model,
    trainPart,
    s,
    rnd: mulberry32(s.seed ^ 0x5bd1e995),
    step: 0,
    batchImages: new Float32Array(s.batchSize * size),
    batchLabels: new Int32Array(s.batchSize),
    average,
    onBatch: opts.onBatch,
  };
  /** The weights validation and the result use: the average when there is one. */
  const evaluated = <T>(f: () => Promise<T>): Promise<T> => (average ? average.withAverage(f) : f());

  try {
    for (let epoch = 1; epoch <= s.epochs; epoch++) {
      const stats = await trainEpoch(loop, epoch, lr);
      if (validation !== undefined)
        Object.assign(
          stats,
          validationFigures(
            await evaluated(() => predictProbabilities(model, validation)),
            validation,
            trainPart.classNames.length,
          ),
        );
      history.push(stats);
      await opts.onEpoch?.(stats);

      if (validation !== undefined && s.patience > 0) {
        if ((stats.valLoss as number) < best.loss) {
          best.weights?.forEach((t) => t.dispose());
          best = {
            loss: stats.valLoss as number,
            epoch,
            weights: await evaluated(async () => model.getWeights().map((w) => w.clone())),
          };
        } else if (epoch - best.epoch >= s.patience) {
          stoppedEarly = epoch < s.epochs;
          break;
        }
      }
      if (s.learningRateDecay !== 1 && Number.isFinite(lr)) {
        lr *= s.learningRateDecay;
        setLearningRate(model, lr);
      }
    }
    if (best.weights !== undefined && best.epoch !== history.length) model.setWeights(best.weights);
    else average?.install();
  } finally {
    best.weights?.forEach((t) => t.dispose());
    average?.dispose();
  }
  const totalImages = history.reduce((a, h) => a + h.images, 0);
  const totalSeconds = history.reduce((a, h) => a + h.seconds, 0);
  return {
    history,
    bestEpoch: best.weights !== undefined ? best.epoch : history.length,
    stoppedEarly,
    trainPart,
    validation,
    imagesPerSecond: totalImages / Math.max(1e-9, totalSeconds),
    options: s,
  };
}
