/**
 * Metric math on plain arrays (no tensors): calibration error, temperature scaling, risk-coverage
 * and the thresholds the review policy uses. Probabilities are row-major N x C softmax outputs.
 */

export interface ReliabilityBin {
  /** Bin range of confidence [lower, upper); the last bin includes 1. */
  lower: number;
  upper: number;
  count: number;
  /** Mean confidence of the bin's samples (NaN-free: 0 when empty). */
  confidence: number;
  /** Share of the bin's samples that were classified correctly (0 when empty). */
  accuracy: number;
}

/** Top-1 class and its probability for each row. */
export function topPrediction(
  probs: ArrayLike<number>,
  classes: number,
): { predicted: Int32Array; confidence: Float64Array } {
  const n = Math.floor(probs.length / classes);
  const predicted = new Int32Array(n);
  const confidence = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bp = -Infinity;
    for (let c = 0; c < classes; c++) {
      const p = probs[i * classes + c] as number;
      if (p > bp) {
        bp = p;
        best = c;
      }
    }
    predicted[i] = best;
    confidence[i] = bp;
  }
  return { predicted, confidence };
}

/** Equal-width reliability bins over [0, 1]. */
export function reliabilityBins(
  confidence: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
  bins = 15,
): ReliabilityBin[] {
  const out: ReliabilityBin[] = Array.from({ length: bins }, (_, b) => ({
    lower: b / bins,
    upper: (b + 1) / bins,
    count: 0,
    confidence: 0,
    accuracy: 0,
  }));
  for (let i = 0; i < confidence.length; i++) {
    const p = confidence[i] as number;
    const b = Math.min(bins - 1, Math.max(0, Math.floor(p * bins)));
    const bin = out[b] as ReliabilityBin;
    bin.count++;
    bin.confidence += p;
    bin.accuracy += correct[i] ? 1 : 0;
  }
  for (const bin of out) {
    if (bin.count > 0) {
      bin.confidence /= bin.count;
      bin.accuracy /= bin.count;
    }
  }
  return out;
}

/**
 * Expected calibration error: sum over equal-width bins of (bin share) * |accuracy - mean confidence|.
 * Default 15 bins (Guo et al. 2017).
 */
export function expectedCalibrationError(
  confidence: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
  bins = 15,
): number {
  const n = confidence.length;
  if (n === 0) return 0;
  let ece = 0;
  for (const b of reliabilityBins(confidence, correct, bins))
    ece += (b.count / n) * Math.abs(b.accuracy - b.confidence);
  return ece;
}

const EPS = 1e-12;

/**
 * Softmax of log(p) / T for every row: temperature scaling applied to softmax outputs (log p equals
 * the logits up to a per-row constant, which softmax ignores). T > 1 softens, T < 1 sharpens.
 */
export function applyTemperature(probs: ArrayLike<number>, classes: number, temperature: number): Float32Array {
  const n = Math.floor(probs.length / classes);
  const out = new Float32Array(n * classes);
  const z = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) {
      const v = Math.log(Math.max(probs[i * classes + c] as number, EPS)) / temperature;
      z[c] = v;
      if (v > max) max = v;
    }
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      const e = Math.exp((z[c] as number) - max);
      z[c] = e;
      sum += e;
    }
    for (let c = 0; c < classes; c++) out[i * classes + c] = (z[c] as number) / sum;
  }
  return out;
}

/** Mean negative log-likelihood of the true labels after temperature scaling. */
export function nllAtTemperature(
  probs: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
  temperature: number,
): number {
  const n = labels.length;
  if (n === 0) return 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++)
      max = Math.max(max, Math.log(Math.max(probs[i * classes + c] as number, EPS)) / temperature);
    let sum = 0;
    for (let c = 0; c < classes; c++)
      sum += Math.exp(Math.log(Math.max(probs[i * classes + c] as number, EPS)) / temperature - max);
    const zy = Math.log(Math.max(probs[i * classes + (labels[i] as number)] as number, EPS)) / temperature;
    total += -(zy - max - Math.log(sum));
  }
  return total / n;
}

export interface TemperatureFitOptions {
  /** Search range of T. Default [0.05, 20]. */
  min?: number;
  max?: number;
  /** Golden-section iterations on log T. Default 80 (range shrinks by 0.618^80). */
  iterations?: number;
}

/**
 * The temperature minimizing validation NLL (Guo et al. 2017). The NLL is convex in 1/T, hence
 * unimodal in log T, so a golden-section search on log T finds the minimum.
 */
export function fitTemperature(
  probs: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
  opts: TemperatureFitOptions = {},
): number {
  if (labels.length === 0) return 1;
  let a = Math.log(opts.min ?? 0.05);
  let b = Math.log(opts.max ?? 20);
  const g = (Math.sqrt(5) - 1) / 2;
  const f = (x: number) => nllAtTemperature(probs, labels, classes, Math.exp(x));
  let c = b - g * (b - a);
  let d = a + g * (b - a);
  let fc = f(c);
  let fd = f(d);
  for (let k = 0; k < (opts.iterations ?? 80); k++) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - g * (b - a);
      fc = f(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + g * (b - a);
      fd = f(d);
    }
  }
  return Math.exp((a + b) / 2);
}

export interface RiskCoveragePoint {
  /** Accept every sample whose confidence is >= threshold. */
  threshold: number;
  /** Share of samples accepted. */
  coverage: number;
  /** Error rate among the accepted samples. */
  risk: number;
  accepted: number;
  errors: number;
}

/**
 * The risk-coverage curve: one point per distinct confidence value, from the most confident down.
 * Samples with equal confidence are accepted or rejected together (a threshold cannot split them).
 */
export function riskCoverageCurve(
  confidence: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
): RiskCoveragePoint[] {
  const n = confidence.length;
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (i, j) => (confidence[j] as number) - (confidence[i] as number),
  );
  const points: RiskCoveragePoint[] = [];
  let errors = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k] as number;
    if (!correct[i]) errors++;
    const next = order[k + 1];
    if (next === undefined || confidence[next] !== confidence[i]) {
      points.push({
        threshold: confidence[i] as number,
        coverage: (k + 1) / n,
        risk: errors / (k + 1),
        accepted: k + 1,
        errors,
      });
    }
  }
  return points;
}

/**
 * Area under the risk-coverage curve: the mean over k = 1..N of the error rate among the k most
 * confident samples, where every member of a group of tied confidences takes the risk at the end of
 * its group. 0 is perfect; a random ranking gives about the overall error rate.
 */
export function aurc(confidence: ArrayLike<number>, correct: ArrayLike<boolean | number>): number {
  const n = confidence.length;
  if (n === 0) return 0;
  let area = 0;
  let prevAccepted = 0;
  for (const p of riskCoverageCurve(confidence, correct)) {
    area += (p.accepted - prevAccepted) * p.risk;
    prevAccepted = p.accepted;
  }
  return area / n;
}

export interface SelectiveThreshold {
  targetError: number;
  /** Accept a prediction when its (calibrated) confidence is >= threshold; null: no threshold meets the target, review everything. */
  threshold: number | null;
  /** Coverage and risk at that threshold on the data it was chosen on. */
  coverage: number;
  risk: number;
}

/**
 * The lowest confidence threshold (largest coverage) whose accepted samples have an error rate at
 * most `targetError`. Choose it on validation data, then check it on test data with `selectiveAt`.
 */
export function selectiveThreshold(
  confidence: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
  targetError = 0.005,
): SelectiveThreshold {
  let best: RiskCoveragePoint | undefined;
  for (const p of riskCoverageCurve(confidence, correct)) if (p.risk <= targetError) best = p;
  return best === undefined
    ? { targetError, threshold: null, coverage: 0, risk: 0 }
    : { targetError, threshold: best.threshold, coverage: best.coverage, risk: best.risk };
}

/** Coverage and risk of a fixed threshold on (other) data. */
export function selectiveAt(
  confidence: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
  threshold: number | null,
): { coverage: number; risk: number; accepted: number; errors: number } {
  let accepted = 0;
  let errors = 0;
  if (threshold !== null) {
    for (let i = 0; i < confidence.length; i++) {
      if ((confidence[i] as number) >= threshold) {
        accepted++;
        if (!correct[i]) errors++;
      }
    }
  }
  const n = confidence.length;
  return { coverage: n === 0 ? 0 : accepted / n, risk: accepted === 0 ? 0 : errors / accepted, accepted, errors };
}

export interface SensitivityThreshold {
  targetSensitivity: number;
  /** Send an image to review when p(positive) >= threshold; below it the image is cleared as negative. */
  threshold: number;
  sensitivity: number;
  specificity: number;
  /** Share of all images below the threshold: cleared without review. */
  spared: number;
}

/**
 * For a two-class screening model: the highest threshold on p(positive) that still flags at least
 * `targetSensitivity` of the positive images (ties at the threshold are flagged), and the share of
 * images it spares from review. With no positive images the threshold is 1 (only p = 1 is flagged).
 */
export function sensitivityThreshold(
  scores: ArrayLike<number>,
  positive: ArrayLike<boolean | number>,
  targetSensitivity = 0.99,
): SensitivityThreshold {
  const pos: number[] = [];
  for (let i = 0; i < scores.length; i++) if (positive[i]) pos.push(scores[i] as number);
  pos.sort((a, b) => b - a);
  const needed = Math.ceil(targetSensitivity * pos.length - 1e-9);
  const threshold = needed <= 0 ? 1 : (pos[needed - 1] as number);
  return { targetSensitivity, threshold, ...screeningAt(scores, positive, threshold) };
}

/** Sensitivity, specificity and spared share of a fixed screening threshold. */
export function screeningAt(
  scores: ArrayLike<number>,
  positive: ArrayLike<boolean | number>,
  threshold: number,
): { sensitivity: number; specificity: number; spared: number } {
  let tp = 0;
  let fn = 0;
  let tn = 0;
  let fp = 0;
  for (let i = 0; i < scores.length; i++) {
    const flagged = (scores[i] as number) >= threshold;
    if (positive[i]) {
      if (flagged) tp++;
      else fn++;
    } else if (flagged) fp++;
    else tn++;
  }
  const n = scores.length;
  return {
    sensitivity: tp + fn === 0 ? 1 : tp / (tp + fn),
    specificity: tn + fp === 0 ? 1 : tn / (tn + fp),
    spared: n === 0 ? 0 : (tn + fn) / n,
  };
}

/**
 * Area under the ROC curve of `scores` for the positive images (the probability that a random
 * positive scores above a random negative, ties counting one half); NaN without both kinds.
 */
export function auroc(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort(
    (a, b) => (scores[a] as number) - (scores[b] as number),
  );
  let rankSum = 0;
  let np = 0;
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1] as number] === scores[idx[i] as number]) j++;
    const meanRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (positive[idx[k] as number]) {
        rankSum += meanRank;
        np++;
      }
    }
    i = j + 1;
  }
  const nn = scores.length - np;
  if (np === 0 || nn === 0) return NaN;
  return (rankSum - (np * (np + 1)) / 2) / (np * nn);
}

export interface RocPoint {
  threshold: number;
  /** False positive rate (1 - specificity) and true positive rate (sensitivity) when flagging scores >= threshold. */
  fpr: number;
  tpr: number;
}

/** The ROC curve (every distinct score as a threshold, highest first), thinned to about `keep` points. */
export function rocCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>, keep = 200): RocPoint[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort(
    (a, b) => (scores[b] as number) - (scores[a] as number),
  );
  let np = 0;
  for (let i = 0; i < scores.length; i++) if (positive[i]) np++;
  const nn = scores.length - np;
  const all: RocPoint[] = [{ threshold: Infinity, fpr: 0, tpr: 0 }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < idx.length; i++) {
    const k = idx[i] as number;
    if (positive[k]) tp++;
    else fp++;
    const next = idx[i + 1];
    if (next !== undefined && scores[next] === scores[k]) continue;
    all.push({ threshold: scores[k] as number, fpr: nn === 0 ? 0 : fp / nn, tpr: np === 0 ? 0 : tp / np });
  }
  if (all.length <= keep) return all;
  const out: RocPoint[] = [];
  let last = -1;
  for (const p of all) {
    const d = p.fpr + p.tpr;
    if (out.length === 0 || d - last >= 2 / keep) {
      out.push(p);
      last = d;
    }
  }
  const end = all[all.length - 1] as RocPoint;
  if (out[out.length - 1] !== end) out.push(end);
  return out;
}
