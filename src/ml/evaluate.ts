/**
 * Evaluation of a trained classifier: accuracy, per-class precision/recall, confusion matrix,
 * calibration before/after temperature scaling (fitted on validation data), risk-coverage and
 * AURC, the selective-classification threshold chosen on validation data, and for two-class
 * abnormal/normal models the screening threshold meeting a target sensitivity.
 */
import * as tf from '@tensorflow/tfjs';
import { LabeledImages, count, imageSize } from './data/dataset';
import {
  ReliabilityBin,
  RiskCoveragePoint,
  SelectiveThreshold,
  applyTemperature,
  aurc,
  expectedCalibrationError,
  fitTemperature,
  nllAtTemperature,
  reliabilityBins,
  riskCoverageCurve,
  screeningAt,
  auroc,
  rocCurve,
  RocPoint,
  selectiveAt,
  selectiveThreshold,
  sensitivityThreshold,
  topPrediction,
} from './calibration';

/** Softmax outputs of the model for every image, row-major N x C, computed in batches. Default batch 256. */
export async function predictProbabilities(
  model: tf.LayersModel,
  data: LabeledImages,
  batchSize = 256,
): Promise<Float32Array> {
  const n = count(data);
  const size = imageSize(data);
  const classes = data.classNames.length;
  const out = new Float32Array(n * classes);
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const x = tf.tensor4d(data.images.subarray(start * size, end * size), [end - start, ...data.shape]);
    const y = model.predict(x) as tf.Tensor;
    const values = await y.data();
    if (values.length !== (end - start) * classes) {
      x.dispose();
      y.dispose();
      throw new Error(`the model outputs ${values.length / (end - start)} classes per image; the data has ${classes}`);
    }
    out.set(values, start * classes);
    x.dispose();
    y.dispose();
  }
  return out;
}

export interface ClassMetrics {
  class: string;
  precision: number;
  recall: number;
  support: number;
}

export interface ClassificationMetrics {
  n: number;
  accuracy: number;
  /** Mean cross-entropy of the true labels. */
  loss: number;
  perClass: ClassMetrics[];
  /** confusion[true][predicted] counts. */
  confusion: number[][];
}

/** Accuracy, per-class precision and recall, and the confusion matrix of softmax outputs. */
export function classificationMetrics(
  probs: ArrayLike<number>,
  labels: ArrayLike<number>,
  classNames: readonly string[],
): ClassificationMetrics {
  const classes = classNames.length;
  const { predicted } = topPrediction(probs, classes);
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i] as number;
    const p = predicted[i] as number;
    (confusion[t] as number[])[p] = ((confusion[t] as number[])[p] as number) + 1;
    if (t === p) correct++;
  }
  const perClass = classNames.map((name, c) => {
    const tp = (confusion[c] as number[])[c] as number;
    const support = (confusion[c] as number[]).reduce((a, b) => a + b, 0);
    const predictedC = confusion.reduce((a, row) => a + (row[c] as number), 0);
    return {
      class: name,
      precision: predictedC === 0 ? 0 : tp / predictedC,
      recall: support === 0 ? 0 : tp / support,
      support,
    };
  });
  return {
    n: labels.length,
    accuracy: labels.length === 0 ? 0 : correct / labels.length,
    loss: nllAtTemperature(probs, labels, classes, 1),
    perClass,
    confusion,
  };
}

export interface EvaluateOptions {
  /** Held-out data the temperature and the thresholds are fitted on (never the test data). Without it T = 1 and the thresholds (selective, screening) are omitted. */
  validation?: LabeledImages;
  /** Target error rate among auto-accepted predictions. Default 0.005 (0.5%). */
  targetSelectiveError?: number;
  /** Target sensitivity of the two-class screening threshold. Default 0.99. */
  targetSensitivity?: number;
  /** Positive ("abnormal") class of a two-class model. Default: the class named abnormal (any case), if any. */
  positiveClass?: string;
  /**
   * A saved model's operating point: its temperature and screening threshold are used as they
   * are (not fitted again), so the report says how that model performs on this data.
   */
  fixed?: { temperature: number; screeningThreshold?: number };
  /** Reliability/ECE bins. Default 15. */
  bins?: number;
  /** Points kept of the risk-coverage curve in the report (evenly by coverage). Default 200. */
  curvePoints?: number;
  batchSize?: number;
}

export interface CalibrationReport {
  /** Fitted on validation data (1 without validation data). */
  temperature: number;
  bins: number;
  /** On the test data. */
  eceBefore: number;
  eceAfter: number;
  nllBefore: number;
  nllAfter: number;
  /** On the validation data, for reference. */
  validationEceBefore?: number;
  validationEceAfter?: number;
  reliabilityBefore: ReliabilityBin[];
  reliabilityAfter: ReliabilityBin[];
}

export interface SelectiveReport extends SelectiveThreshold {
  /** All confidences are calibrated (after temperature scaling). */
  chosenOn: 'validation';
  /** The validation-chosen threshold applied to the test data. */
  test: { coverage: number; risk: number; accepted: number; errors: number };
}

/** Screening figures of one data set at one threshold; `specificity` is the share of negative (e.g. NORMAL) studies cleared without review. */
export interface OperatingPoint {
  sensitivity: number;
  specificity: number;
  /** Share of all images below the threshold (cleared, whatever their class). */
  spared: number;
}

export interface ScreeningFigures extends OperatingPoint {
  auroc: number;
  /** The same figures at p(positive) >= 0.5. */
  atHalf: OperatingPoint;
  positives: number;
  negatives: number;
}

export interface ScreeningReport {
  positiveClass: string;
  targetSensitivity: number;
  /** Flag for review when calibrated p(positive) >= threshold. Chosen on validation data (or the model card's, when evaluating a saved model). */
  threshold: number;
  /** Where the threshold came from. */
  thresholdFrom: 'validation' | 'model card';
  validation?: ScreeningFigures;
  test: ScreeningFigures;
  /** ROC curve of the test data (calibrated p(positive)). */
  roc: RocPoint[];
}

export interface EvaluationReport extends ClassificationMetrics {
  classNames: string[];
  source: string;
  calibration: CalibrationReport;
  /** AURC of calibrated confidences on the test data (and before calibration). */
  aurc: number;
  aurcBefore: number;
  riskCoverage: RiskCoveragePoint[];
  selective?: SelectiveReport;
  screening?: ScreeningReport;
}

function correctness(
  probs: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
): { confidence: Float64Array; correct: Uint8Array } {
  const { predicted, confidence } = topPrediction(probs, classes);
  const correct = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) correct[i] = predicted[i] === labels[i] ? 1 : 0;
  return { confidence, correct };
}

function thin(points: RiskCoveragePoint[], keep: number): RiskCoveragePoint[] {
  if (points.length <= keep) return points;
  const out: RiskCoveragePoint[] = [];
  let next = 0;
  for (const p of points) {
    if (p.coverage >= next) {
      out.push(p);
      next = p.coverage + 1 / keep;
    }
  }
  const last = points[points.length - 1];
  if (last !== undefined && out[out.length - 1] !== last) out.push(last);
  return out;
}

/** Everything `triage evaluate` reports, from precomputed softmax outputs (pure; unit-testable). */
export function evaluateProbabilities(
  test: { probs: ArrayLike<number>; labels: ArrayLike<number>; source: string },
  classNames: readonly string[],
  validation: { probs: ArrayLike<number>; labels: ArrayLike<number> } | undefined,
  opts: EvaluateOptions = {},
): EvaluationReport {
  const classes = classNames.length;
  const bins = opts.bins ?? 15;
  const temperature =
    opts.fixed?.temperature ??
    (validation && validation.labels.length > 0 ? fitTemperature(validation.probs, validation.labels, classes) : 1);
  const testCal = applyTemperature(test.probs, classes, temperature);
  const before = correctness(test.probs, test.labels, classes);
  const after = correctness(testCal, test.labels, classes);
  const metrics = classificationMetrics(test.probs, test.labels, classNames);
  const curve = riskCoverageCurve(after.confidence, after.correct);
  const report: EvaluationReport = {
    ...metrics,
    classNames: [...classNames],
    source: test.source,
    calibration: {
      temperature,
      bins,
      eceBefore: expectedCalibrationError(before.confidence, before.correct, bins),
      eceAfter: expectedCalibrationError(after.confidence, after.correct, bins),
      nllBefore: metrics.loss,
      nllAfter: nllAtTemperature(test.probs, test.labels, classes, temperature),
      reliabilityBefore: reliabilityBins(before.confidence, before.correct, bins),
      reliabilityAfter: reliabilityBins(after.confidence, after.correct, bins),
    },
    aurc: aurc(after.confidence, after.correct),
    aurcBefore: aurc(before.confidence, before.correct),
    riskCoverage: thin(curve, opts.curvePoints ?? 200),
  };
  if (validation && validation.labels.length > 0) {
    const valCal = applyTemperature(validation.probs, classes, temperature);
    const vBefore = correctness(validation.probs, validation.labels, classes);
    const vAfter = correctness(valCal, validation.labels, classes);
    report.calibration.validationEceBefore = expectedCalibrationError(vBefore.confidence, vBefore.correct, bins);
    report.calibration.validationEceAfter = expectedCalibrationError(vAfter.confidence, vAfter.correct, bins);
    const sel = selectiveThreshold(vAfter.confidence, vAfter.correct, opts.targetSelectiveError ?? 0.005);
    report.selective = {
      ...sel,
      chosenOn: 'validation',
      test: selectiveAt(after.confidence, after.correct, sel.threshold),
    };
  }
  const positive = positiveClassIndex(classNames, opts.positiveClass);
  if (positive !== undefined) {
    const side = (probs: ArrayLike<number>, labels: ArrayLike<number>) => ({
      scores: Float64Array.from({ length: labels.length }, (_, i) => probs[i * classes + positive] as number),
      pos: Uint8Array.from({ length: labels.length }, (_, i) => (labels[i] === positive ? 1 : 0)),
    });
    const t = side(testCal, test.labels);
    const v =
      validation && validation.labels.length > 0
        ? side(applyTemperature(validation.probs, classes, temperature), validation.labels)
        : undefined;
    const target = opts.targetSensitivity ?? 0.99;
    const threshold =
      opts.fixed?.screeningThreshold ?? (v ? sensitivityThreshold(v.scores, v.pos, target).threshold : undefined);
    if (threshold !== undefined) {
      report.screening = {
        positiveClass: classNames[positive] as string,
        targetSensitivity: target,
        threshold,
        thresholdFrom: opts.fixed?.screeningThreshold !== undefined ? 'model card' : 'validation',
        ...(v ? { validation: screeningFigures(v.scores, v.pos, threshold) } : {}),
        test: screeningFigures(t.scores, t.pos, threshold),
        roc: rocCurve(t.scores, t.pos, opts.curvePoints ?? 200),
      };
    }
  }
  return report;
}

function screeningFigures(scores: Float64Array, pos: Uint8Array, threshold: number): ScreeningFigures {
  let positives = 0;
  for (const p of pos) positives += p;
  return {
    auroc: auroc(scores, pos),
    ...screeningAt(scores, pos, threshold),
    atHalf: screeningAt(scores, pos, 0.5),
    positives,
    negatives: pos.length - positives,
  };
}

/** Index of the screening model's positive class: explicit, or "abnormal" in a two-class model. */
export function positiveClassIndex(classNames: readonly string[], positiveClass?: string): number | undefined {
  if (positiveClass !== undefined) {
    const i = classNames.indexOf(positiveClass);
    if (i < 0)
      throw new Error(`positive class ${JSON.stringify(positiveClass)} is not one of ${classNames.join(', ')}`);
    return i;
  }
  if (classNames.length !== 2) return undefined;
  const i = classNames.findIndex((c) => c.toLowerCase() === 'abnormal');
  return i < 0 ? undefined : i;
}

/** Runs the model on the test (and validation) data and reports every metric. */
export async function evaluateModel(
  model: tf.LayersModel,
  test: LabeledImages,
  opts: EvaluateOptions = {},
): Promise<EvaluationReport> {
  const probs = await predictProbabilities(model, test, opts.batchSize);
  const val = opts.validation
    ? { probs: await predictProbabilities(model, opts.validation, opts.batchSize), labels: opts.validation.labels }
    : undefined;
  return evaluateProbabilities({ probs, labels: test.labels, source: test.source }, test.classNames, val, opts);
}

/** The few figures a model card and a log line need. */
export function summarize(r: EvaluationReport): Record<string, number | null | string> {
  return {
    accuracy: r.accuracy,
    loss: r.loss,
    ece: r.calibration.eceBefore,
    eceCalibrated: r.calibration.eceAfter,
    temperature: r.calibration.temperature,
    aurc: r.aurc,
    selectiveThreshold: r.selective?.threshold ?? null,
    selectiveCoverage: r.selective?.test.coverage ?? null,
    selectiveRisk: r.selective?.test.risk ?? null,
  };
}
