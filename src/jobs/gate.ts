/**
 * The promotion gate (pure). Candidate and promoted model are scored on the same held-out images;
 * the candidate is promoted only if it is no worse, within `margin`, on
 *
 *  1. accuracy:        candidate >= promoted - margin;
 *  2. selective error: the error rate among the images the candidate would auto-accept (calibrated
 *     confidence >= its selective threshold) must not exceed the promoted model's error rate
 *     among the same number of its own most confident held-out images, plus margin.
 *
 * Selective error is compared at the candidate's coverage because comparing each model at its own
 * threshold rewards accepting nothing: a model that sends every image to review has no selective
 * error at all, so no candidate could ever beat it. Both figures at each model's own threshold are
 * reported too. With nothing promoted yet, the candidate is promoted.
 */
import { selectiveAt, topPrediction, applyTemperature } from '../ml/calibration';

export interface HeldOutScores {
  version?: string;
  n: number;
  accuracy: number;
  /** At the model's own selective threshold (null: the model auto-accepts nothing). */
  selective: { threshold: number | null; coverage: number; risk: number; accepted: number; errors: number };
  /** Calibrated top-class confidence and correctness of every held-out image, in held-out order. */
  confidence: Float64Array;
  correct: Uint8Array;
}

/**
 * Scores softmax outputs against the true class names. Classes are matched by name, so a promoted
 * model with another class order (or classes the data lacks) is scored fairly: an image whose
 * true class the model does not know counts as an error.
 */
export function scoreHeldOut(
  probs: ArrayLike<number>,
  modelClasses: readonly string[],
  truth: readonly string[],
  temperature: number,
  threshold: number | null,
  version?: string,
): HeldOutScores {
  const classes = modelClasses.length;
  const n = truth.length;
  if (probs.length !== n * classes) throw new Error(`${probs.length} probabilities do not make ${n} images x ${classes} classes`);
  const calibrated = applyTemperature(probs, classes, temperature > 0 ? temperature : 1);
  const { predicted, confidence } = topPrediction(calibrated, classes);
  const correct = new Uint8Array(n);
  let right = 0;
  for (let i = 0; i < n; i++) {
    if (modelClasses[predicted[i] as number] === truth[i]) {
      correct[i] = 1;
      right++;
    }
  }
  return { ...(version !== undefined ? { version } : {}), n, accuracy: n === 0 ? 0 : right / n, selective: { threshold, ...selectiveAt(confidence, correct, threshold) }, confidence, correct };
}

/** Error rate among the `accepted` most confident images (ties broken by held-out order). */
export function riskOfMostConfident(confidence: ArrayLike<number>, correct: ArrayLike<number>, accepted: number): { accepted: number; errors: number; risk: number } {
  const order = Array.from({ length: confidence.length }, (_, i) => i).sort((a, b) => (confidence[b] as number) - (confidence[a] as number) || a - b);
  const k = Math.max(0, Math.min(accepted, order.length));
  let errors = 0;
  for (let j = 0; j < k; j++) if ((correct[order[j] as number] as number) === 0) errors++;
  return { accepted: k, errors, risk: k === 0 ? 0 : errors / k };
}

export interface GateDecision {
  promote: boolean;
  reason: string;
  margin: number;
  accuracy: { candidate: number; promoted: number | null; ok: boolean };
  selectiveError: {
    /** Share of held-out images the candidate auto-accepts at its threshold. */
    coverage: number;
    candidate: number;
    /** The promoted model's error among the same number of its most confident images. */
    promotedAtSameCoverage: number | null;
    ok: boolean;
  };
}

const EPS = 1e-12;
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function decide(candidate: HeldOutScores, promoted: HeldOutScores | undefined, margin: number): GateDecision {
  if (!(margin >= 0 && margin <= 1)) throw new RangeError(`promotion margin must be in [0, 1], got ${margin}`);
  const sel = candidate.selective;
  if (promoted === undefined) {
    return {
      promote: true,
      reason: `no model is promoted yet; candidate held-out accuracy ${pct(candidate.accuracy)}`,
      margin,
      accuracy: { candidate: candidate.accuracy, promoted: null, ok: true },
      selectiveError: { coverage: sel.coverage, candidate: sel.risk, promotedAtSameCoverage: null, ok: true },
    };
  }
  if (promoted.n !== candidate.n) throw new Error(`the models were scored on different held-out sets (${candidate.n} vs ${promoted.n} images)`);
  const old = riskOfMostConfident(promoted.confidence, promoted.correct, sel.accepted);
  const accOk = candidate.accuracy >= promoted.accuracy - margin - EPS;
  const selOk = sel.risk <= old.risk + margin + EPS;
  const accText = `held-out accuracy ${pct(candidate.accuracy)} vs ${pct(promoted.accuracy)}`;
  const selText = `selective error ${pct(sel.risk)} vs ${pct(old.risk)} at coverage ${pct(sel.coverage)} (${sel.accepted} of ${candidate.n} images)`;
  const failures = [
    ...(accOk ? [] : [`${accText} is worse by more than the margin ${margin}`]),
    ...(selOk ? [] : [`${selText} is worse by more than the margin ${margin}`]),
  ];
  return {
    promote: failures.length === 0,
    reason: failures.length === 0 ? `no worse than ${promoted.version ?? 'the promoted model'} (margin ${margin}): ${accText}; ${selText}` : `worse than ${promoted.version ?? 'the promoted model'}: ${failures.join('; ')}`,
    margin,
    accuracy: { candidate: candidate.accuracy, promoted: promoted.accuracy, ok: accOk },
    selectiveError: { coverage: sel.coverage, candidate: sel.risk, promotedAtSameCoverage: old.risk, ok: selOk },
  };
}
