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
 *
 * Screening models (a positive class, e.g. PNEUMONIA, and a review threshold on its calibrated
 * probability) are judged by what screening needs instead (`decideScreening`):
 *
 *  1. AUROC of p(positive):            candidate >= promoted - margin;
 *  2. sensitivity at each model's own card threshold (the candidate's chosen on its
 *     patient-held-out validation split): candidate >= promoted - margin.
 *
 * The specificity at each threshold (the share of negative studies cleared without review) is
 * reported beside them.
 */
import { selectiveAt, topPrediction, applyTemperature, auroc, screeningAt } from '../ml/calibration';

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
  if (probs.length !== n * classes)
    throw new Error(`${probs.length} probabilities do not make ${n} images x ${classes} classes`);
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
  return {
    ...(version !== undefined ? { version } : {}),
    n,
    accuracy: n === 0 ? 0 : right / n,
    selective: { threshold, ...selectiveAt(confidence, correct, threshold) },
    confidence,
    correct,
  };
}

/** Error rate among the `accepted` most confident images (ties broken by held-out order). */
export function riskOfMostConfident(
  confidence: ArrayLike<number>,
  correct: ArrayLike<number>,
  accepted: number,
): { accepted: number; errors: number; risk: number } {
  const order = Array.from({ length: confidence.length }, (_, i) => i).sort(
    (a, b) => (confidence[b] as number) - (confidence[a] as number) || a - b,
  );
  const k = Math.max(0, Math.min(accepted, order.length));
  let errors = 0;
  for (let j = 0; j < k; j++) if ((correct[order[j] as number] as number) === 0) errors++;
  return { accepted: k, errors, risk: k === 0 ? 0 : errors / k };
}

export interface AccuracyGateDecision {
  kind: 'accuracy';
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

export function decide(
  candidate: HeldOutScores,
  promoted: HeldOutScores | undefined,
  margin: number,
): AccuracyGateDecision {
  checkMargin(margin);
  const sel = candidate.selective;
  if (promoted === undefined) {
    return {
      kind: 'accuracy',
      promote: true,
      reason: `no model is promoted yet; candidate held-out accuracy ${pct(candidate.accuracy)}`,
      margin,
      accuracy: { candidate: candidate.accuracy, promoted: null, ok: true },
      selectiveError: { coverage: sel.coverage, candidate: sel.risk, promotedAtSameCoverage: null, ok: true },
    };
  }
  if (promoted.n !== candidate.n)
    throw new Error(`the models were scored on different held-out sets (${candidate.n} vs ${promoted.n} images)`);
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
    kind: 'accuracy',
    promote: failures.length === 0,
    reason:
      failures.length === 0
        ? `no worse than ${promoted.version ?? 'the promoted model'} (margin ${margin}): ${accText}; ${selText}`
        : `worse than ${promoted.version ?? 'the promoted model'}: ${failures.join('; ')}`,
    margin,
    accuracy: { candidate: candidate.accuracy, promoted: promoted.accuracy, ok: accOk },
    selectiveError: { coverage: sel.coverage, candidate: sel.risk, promotedAtSameCoverage: old.risk, ok: selOk },
  };
}

function checkMargin(margin: number): void {
  if (!(margin >= 0 && margin <= 1)) throw new RangeError(`promotion margin must be in [0, 1], got ${margin}`);
}

/** A screening model's figures on the held-out images: calibrated p(positive) against the truth. */
export interface ScreeningScores {
  version?: string;
  n: number;
  positiveClass: string;
  /** The true classes of the held-out images other than the positive one (what "cleared" clears). */
  negativeClasses: string[];
  positives: number;
  negatives: number;
  /** Flag for review when calibrated p(positive) >= threshold (the model card's); null: the model has none. */
  threshold: number | null;
  /** null: the model has no output for the positive class, or the held-out images lack positives or negatives. */
  auroc: number | null;
  /** At the threshold; null without one (or without the class). */
  sensitivity: number | null;
  /** Share of the negative images cleared (below the threshold). */
  specificity: number | null;
}

/**
 * Screening figures of softmax outputs (classes matched by name): AUROC of the calibrated
 * probability of `positiveClass`, and sensitivity and specificity at `threshold`. A model without
 * an output for the positive class gets null figures.
 */
export function scoreScreening(
  probs: ArrayLike<number>,
  modelClasses: readonly string[],
  truth: readonly string[],
  o: { temperature: number; positiveClass: string; threshold: number | null; version?: string },
): ScreeningScores {
  const classes = modelClasses.length;
  const n = truth.length;
  if (probs.length !== n * classes)
    throw new Error(`${probs.length} probabilities do not make ${n} images x ${classes} classes`);
  const pos = Uint8Array.from(truth, (t) => (t === o.positiveClass ? 1 : 0));
  const positives = pos.reduce((a, b) => a + b, 0);
  const base = {
    ...(o.version !== undefined ? { version: o.version } : {}),
    n,
    positiveClass: o.positiveClass,
    negativeClasses: [...new Set(truth.filter((t) => t !== o.positiveClass))].sort(),
    positives,
    negatives: n - positives,
  };
  const k = modelClasses.indexOf(o.positiveClass);
  if (k < 0) return { ...base, threshold: null, auroc: null, sensitivity: null, specificity: null };
  const calibrated = applyTemperature(probs, classes, o.temperature > 0 ? o.temperature : 1);
  const scores = Float64Array.from({ length: n }, (_, i) => calibrated[i * classes + k] as number);
  const area = auroc(scores, pos);
  const at = o.threshold === null ? undefined : screeningAt(scores, pos, o.threshold);
  return {
    ...base,
    threshold: o.threshold,
    auroc: Number.isFinite(area) ? area : null,
    sensitivity: at?.sensitivity ?? null,
    specificity: at?.specificity ?? null,
  };
}

export interface ScreeningGateDecision {
  kind: 'screening';
  promote: boolean;
  reason: string;
  margin: number;
  positiveClass: string;
  heldOut: { n: number; positives: number; negatives: number };
  auroc: { candidate: number | null; promoted: number | null; ok: boolean };
  /** At each model's own card threshold. */
  sensitivity: { candidate: number | null; promoted: number | null; ok: boolean };
  /** Share of negatives cleared at each model's threshold: reported, not gated. */
  specificity: { candidate: number | null; promoted: number | null };
  threshold: { candidate: number | null; promoted: number | null };
}

export type GateDecision = AccuracyGateDecision | ScreeningGateDecision;

const fig = (x: number | null, f: (v: number) => string) => (x === null ? 'n/a' : f(x));

/** The screening gate (pure): AUROC and sensitivity at each model's threshold, within `margin`. */
export function decideScreening(
  candidate: ScreeningScores,
  promoted: ScreeningScores | undefined,
  margin: number,
): ScreeningGateDecision {
  checkMargin(margin);
  const c = candidate;
  const p = promoted;
  const pc = c.positiveClass;
  const cleared = `of ${c.negativeClasses.length > 0 ? c.negativeClasses.join('/') : 'negative'} images cleared`;
  const describe = (s: ScreeningScores) =>
    `AUROC ${fig(s.auroc, (v) => v.toFixed(4))}, sensitivity ${fig(s.sensitivity, pct)} and ${fig(s.specificity, pct)} ${cleared} at threshold ${fig(s.threshold, (v) => v.toFixed(4))}`;
  const decision = (promote: boolean, reason: string, aurocOk: boolean, sensOk: boolean): ScreeningGateDecision => ({
    kind: 'screening',
    promote,
    reason,
    margin,
    positiveClass: pc,
    heldOut: { n: c.n, positives: c.positives, negatives: c.negatives },
    auroc: { candidate: c.auroc, promoted: p?.auroc ?? null, ok: aurocOk },
    sensitivity: { candidate: c.sensitivity, promoted: p?.sensitivity ?? null, ok: sensOk },
    specificity: { candidate: c.specificity, promoted: p?.specificity ?? null },
    threshold: { candidate: c.threshold, promoted: p?.threshold ?? null },
  });
  if (c.threshold === null || c.sensitivity === null) {
    return decision(
      false,
      `the candidate has no ${pc} review threshold (it is chosen on the validation split, which needs at least 20 training images with ${pc} among them); screening gate not passed`,
      false,
      false,
    );
  }
  if (p === undefined)
    return decision(
      true,
      `no model is promoted yet; screening gate (${pc} positive): candidate held-out ${describe(c)}`,
      true,
      true,
    );
  if (p.n !== c.n) throw new Error(`the models were scored on different held-out sets (${c.n} vs ${p.n} images)`);
  if (c.positives === 0 || c.negatives === 0) {
    return decision(
      false,
      `cannot compare screening models: the ${c.n} held-out images hold ${c.positives} ${pc} and ${c.negatives} other images (both kinds are needed); label more images`,
      false,
      false,
    );
  }
  const who = p.version ?? 'the promoted model';
  const aurocOk = p.auroc === null || (c.auroc !== null && c.auroc >= p.auroc - margin - EPS);
  const sensOk = p.sensitivity === null || c.sensitivity >= p.sensitivity - margin - EPS;
  const figures = `screening gate (${pc} positive, margin ${margin}, ${c.n} held-out images: ${c.positives} ${pc}): candidate ${describe(c)}; ${who} ${describe(p)}${p.threshold === null ? ` (${who} has no ${pc} threshold: sensitivity not compared)` : ''}`;
  const failures = [
    ...(aurocOk
      ? []
      : [
          `AUROC ${fig(c.auroc, (v) => v.toFixed(4))} vs ${fig(p.auroc, (v) => v.toFixed(4))} is worse by more than the margin ${margin}`,
        ]),
    ...(sensOk
      ? []
      : [`sensitivity ${pct(c.sensitivity)} vs ${fig(p.sensitivity, pct)} is worse by more than the margin ${margin}`]),
  ];
  return decision(
    failures.length === 0,
    failures.length === 0
      ? `no worse than ${who}: ${figures}`
      : `worse than ${who}: ${failures.join('; ')}; ${figures}`,
    aurocOk,
    sensOk,
  );
}
