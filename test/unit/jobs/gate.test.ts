import {
  decide,
  decideScreening,
  riskOfMostConfident,
  scoreHeldOut,
  scoreScreening,
  HeldOutScores,
} from '../../../src/jobs/gate';

/** Scores from explicit confidences and correctness (threshold given as the accepted count's lowest confidence). */
function scores(confidence: number[], correct: number[], threshold: number | null, version?: string): HeldOutScores {
  const n = confidence.length;
  const acc = correct.reduce((a, b) => a + b, 0) / n;
  let accepted = 0;
  let errors = 0;
  if (threshold !== null) {
    confidence.forEach((c, i) => {
      if (c >= threshold) {
        accepted++;
        if (correct[i] === 0) errors++;
      }
    });
  }
  return {
    ...(version !== undefined ? { version } : {}),
    n,
    accuracy: acc,
    selective: { threshold, coverage: accepted / n, risk: accepted === 0 ? 0 : errors / accepted, accepted, errors },
    confidence: Float64Array.from(confidence),
    correct: Uint8Array.from(correct),
  };
}

describe('promotion gate', () => {
  it('promotes the first candidate when nothing is promoted', () => {
    const d = decide(scores([0.9, 0.8], [1, 0], 0.85), undefined, 0);
    expect(d).toMatchObject({ kind: 'accuracy', promote: true, accuracy: { promoted: null, ok: true } });
    expect(d.reason).toMatch(/no model is promoted yet/);
  });

  it('promotes a candidate that is no worse on accuracy and on selective error at its coverage', () => {
    // candidate: 4/5 right, accepts the top 2 (both right); promoted: 3/5 right, its top 2 hold an error.
    const cand = scores([0.99, 0.95, 0.6, 0.5, 0.4], [1, 1, 1, 1, 0], 0.9);
    const old = scores([0.97, 0.96, 0.5, 0.4, 0.3], [1, 0, 1, 1, 0], 0.99, 'v1');
    const d = decide(cand, old, 0);
    expect(d.promote).toBe(true);
    expect(d.selectiveError).toEqual({ coverage: 0.4, candidate: 0, promotedAtSameCoverage: 0.5, ok: true });
    expect(d.accuracy).toEqual({ candidate: 0.8, promoted: 0.6, ok: true });
    expect(d.reason).toMatch(
      /no worse than v1 \(margin 0\): held-out accuracy 80.00% vs 60.00%; selective error 0.00% vs 50.00% at coverage 40.00% \(2 of 5 images\)/,
    );
  });

  it('refuses a candidate with lower accuracy, naming the figures', () => {
    const cand = scores([0.9, 0.8, 0.7, 0.6], [1, 0, 0, 0], null);
    const old = scores([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0], 0.95, 'v7');
    const d = decide(cand, old, 0);
    expect(d.promote).toBe(false);
    expect(d.accuracy.ok).toBe(false);
    expect(d.reason).toMatch(/^worse than v7: held-out accuracy 25.00% vs 75.00% is worse by more than the margin 0$/);
  });

  it("refuses a candidate whose auto-accepted images hold more errors than the promoted model's most confident ones", () => {
    // Same accuracy; the candidate accepts 3 with one error, the promoted model's top 3 are all right.
    const cand = scores([0.99, 0.98, 0.97, 0.2], [1, 0, 1, 1], 0.95);
    const old = scores([0.99, 0.98, 0.97, 0.2], [1, 1, 1, 0], 0.999, 'v2');
    const d = decide(cand, old, 0);
    expect(d.promote).toBe(false);
    expect(d.selectiveError.ok).toBe(false);
    expect(d.reason).toMatch(/selective error 33.33% vs 0.00% at coverage 75.00%/);
    // A margin of 0.35 tolerates it.
    expect(decide(cand, old, 0.35).promote).toBe(true);
  });

  it('does not let a promoted model that accepts nothing block every candidate', () => {
    const cand = scores([0.99, 0.98, 0.5, 0.4], [1, 0, 1, 1], 0.95);
    const old = scores([0.3, 0.3, 0.2, 0.2], [0, 1, 0, 1], null, 'untrained');
    expect(old.selective.risk).toBe(0);
    const d = decide(cand, old, 0);
    expect(d.selectiveError).toMatchObject({ candidate: 0.5, promotedAtSameCoverage: 0.5, ok: true });
    expect(d.promote).toBe(true);
  });

  it('ranks by confidence, breaking ties by order', () => {
    expect(riskOfMostConfident([0.5, 0.9, 0.9, 0.1], [1, 0, 1, 1], 2)).toEqual({ accepted: 2, errors: 1, risk: 0.5 });
    expect(riskOfMostConfident([0.5, 0.9], [1, 0], 0)).toEqual({ accepted: 0, errors: 0, risk: 0 });
    expect(riskOfMostConfident([0.5, 0.9], [1, 0], 5)).toEqual({ accepted: 2, errors: 1, risk: 0.5 });
  });

  it('rejects a margin outside [0, 1] and scores on different sets', () => {
    const s = scores([0.9], [1], null);
    expect(() => decide(s, s, -0.1)).toThrow(/margin/);
    expect(() => decide(s, scores([0.9, 0.1], [1, 1], null), 0)).toThrow(/different held-out sets/);
  });
});

describe('scoreHeldOut', () => {
  it('matches classes by name, so another class order or unknown classes score fairly', () => {
    // Model classes in reverse order; image 0 is a "b" predicted "b", image 1 a "c" the model does not know.
    const probs = [0.1, 0.9, /* */ 0.8, 0.2];
    const s = scoreHeldOut(probs, ['a', 'b'], ['b', 'c'], 1, 0.85);
    expect(Array.from(s.correct)).toEqual([1, 0]);
    expect(s.accuracy).toBe(0.5);
    expect(s.selective).toEqual({ threshold: 0.85, coverage: 0.5, risk: 0, accepted: 1, errors: 0 });
    expect(() => scoreHeldOut([0.5], ['a', 'b'], ['a'], 1, null)).toThrow(/do not make 1 images x 2 classes/);
  });

  it("applies the model's temperature before thresholding", () => {
    const probs = [0.9, 0.1];
    expect(scoreHeldOut(probs, ['a', 'b'], ['a'], 1, 0.85).selective.accepted).toBe(1);
    // T = 3 flattens 0.9 to about 0.67: below the threshold.
    expect(scoreHeldOut(probs, ['a', 'b'], ['a'], 3, 0.85).selective.accepted).toBe(0);
  });
});

/** Two-class softmax rows [p(NORMAL), p(PNEUMONIA)] from p(PNEUMONIA) per image. */
const CLASSES = ['NORMAL', 'PNEUMONIA'];
const rows = (p: number[]) => p.flatMap((x) => [1 - x, x]);
const TRUTH = ['PNEUMONIA', 'PNEUMONIA', 'PNEUMONIA', 'NORMAL', 'NORMAL', 'NORMAL'];
const screen = (p: number[], threshold: number | null, version?: string, classes = CLASSES) =>
  scoreScreening(classes === CLASSES ? rows(p) : p, classes, TRUTH, {
    temperature: 1,
    positiveClass: 'PNEUMONIA',
    threshold,
    ...(version ? { version } : {}),
  });

describe('screening gate', () => {
  // Separates every PNEUMONIA image from every NORMAL one; at 0.65 it flags all three and clears all NORMAL.
  const perfect = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];

  it("scores AUROC, sensitivity and the share of negatives cleared at the model's threshold", () => {
    const s = screen([0.9, 0.8, 0.4, 0.5, 0.2, 0.1], 0.4, 'c');
    // 8 of the 9 positive-negative pairs are ordered right (0.4 < 0.5).
    expect(s.auroc).toBeCloseTo(8 / 9, 12);
    expect(s).toMatchObject({
      version: 'c',
      n: 6,
      positives: 3,
      negatives: 3,
      negativeClasses: ['NORMAL'],
      threshold: 0.4,
      sensitivity: 1,
    });
    expect(s.specificity).toBeCloseTo(2 / 3, 12);
  });

  it('promotes the first screening candidate when nothing is promoted, with its figures', () => {
    const d = decideScreening(screen(perfect, 0.65, 'c'), undefined, 0);
    expect(d).toMatchObject({
      kind: 'screening',
      promote: true,
      positiveClass: 'PNEUMONIA',
      auroc: { candidate: 1, promoted: null, ok: true },
      sensitivity: { candidate: 1, promoted: null },
      specificity: { candidate: 1, promoted: null },
    });
    expect(d.reason).toMatch(
      /^no model is promoted yet; screening gate \(PNEUMONIA positive\): candidate held-out AUROC 1.0000, sensitivity 100.00% and 100.00% of NORMAL images cleared at threshold 0.6500$/,
    );
  });

  it('refuses a candidate whose AUROC is lower by more than the margin', () => {
    const cand = screen([0.9, 0.8, 0.4, 0.5, 0.2, 0.1], 0.4, 'c');
    const old = screen(perfect, 0.65, 'v1');
    const d = decideScreening(cand, old, 0);
    expect(d.promote).toBe(false);
    expect(d.auroc).toEqual({ candidate: cand.auroc, promoted: 1, ok: false });
    expect(d.sensitivity).toEqual({ candidate: 1, promoted: 1, ok: true });
    expect(d.specificity.candidate).toBeCloseTo(2 / 3, 12);
    expect(d.specificity.promoted).toBe(1);
    expect(d.threshold).toEqual({ candidate: 0.4, promoted: 0.65 });
    expect(d.reason).toMatch(
      /^worse than v1: AUROC 0.8889 vs 1.0000 is worse by more than the margin 0; screening gate/,
    );
    // 0.11 is within a margin of 0.12, not of 0.1.
    expect(decideScreening(cand, old, 0.1).promote).toBe(false);
    expect(decideScreening(cand, old, 0.12).promote).toBe(true);
  });

  it('refuses a candidate whose sensitivity at its own threshold is lower by more than the margin, even with the same AUROC', () => {
    // Same ranking, but the candidate's threshold misses one PNEUMONIA image of three.
    const cand = screen(perfect, 0.75, 'c');
    const old = screen(perfect, 0.65, 'v2');
    const d = decideScreening(cand, old, 0);
    expect(d).toMatchObject({
      promote: false,
      auroc: { candidate: 1, promoted: 1, ok: true },
      sensitivity: { promoted: 1, ok: false },
    });
    expect(d.sensitivity.candidate).toBeCloseTo(2 / 3, 12);
    expect(d.reason).toMatch(/^worse than v2: sensitivity 66.67% vs 100.00% is worse by more than the margin 0;/);
    expect(decideScreening(cand, old, 0.3).promote).toBe(false);
    expect(decideScreening(cand, old, 0.34).promote).toBe(true);
  });

  it('promotes a candidate no worse on both, and reports (does not gate on) the share of NORMAL cleared', () => {
    // The candidate flags one NORMAL image more (lower threshold), at the same AUROC and sensitivity.
    const cand = screen(perfect, 0.3, 'c');
    const old = screen(perfect, 0.65, 'v3');
    const d = decideScreening(cand, old, 0);
    expect(d.promote).toBe(true);
    expect(d.specificity.candidate).toBeCloseTo(2 / 3, 12);
    expect(d.specificity.promoted).toBe(1);
    expect(d.reason).toMatch(
      /^no worse than v3: screening gate \(PNEUMONIA positive, margin 0, 6 held-out images: 3 PNEUMONIA\): candidate AUROC 1.0000, sensitivity 100.00% and 66.67% of NORMAL images cleared at threshold 0.3000; v3 AUROC 1.0000, sensitivity 100.00% and 100.00% of NORMAL images cleared at threshold 0.6500$/,
    );
  });

  it('refuses a candidate without a review threshold, and cannot compare without both kinds of images', () => {
    expect(decideScreening(screen(perfect, null), undefined, 0)).toMatchObject({
      promote: false,
      reason: expect.stringMatching(/no PNEUMONIA review threshold/),
    });
    const onlyNormal = (p: number[], t: number) =>
      scoreScreening(rows(p), CLASSES, ['NORMAL', 'NORMAL'], {
        temperature: 1,
        positiveClass: 'PNEUMONIA',
        threshold: t,
      });
    const d = decideScreening(onlyNormal([0.1, 0.2], 0.5), onlyNormal([0.1, 0.2], 0.5), 0);
    expect(d.auroc.candidate).toBeNull();
    expect(d).toMatchObject({
      promote: false,
      reason: expect.stringMatching(
        /cannot compare screening models: the 2 held-out images hold 0 PNEUMONIA and 2 other images/,
      ),
    });
  });

  it('compares only AUROC with a promoted model that has no screening threshold, and nothing with one that has no such class', () => {
    const cand = screen(perfect, 0.65, 'c');
    const noThreshold = decideScreening(cand, screen([0.9, 0.8, 0.4, 0.5, 0.2, 0.1], null, 'sel'), 0);
    expect(noThreshold).toMatchObject({
      promote: true,
      sensitivity: { promoted: null, ok: true },
      auroc: { ok: true },
    });
    expect(noThreshold.reason).toMatch(/sel has no PNEUMONIA threshold: sensitivity not compared/);
    const digits = scoreScreening(new Array(6 * 3).fill(1 / 3), ['0', '1', '2'], TRUTH, {
      temperature: 1,
      positiveClass: 'PNEUMONIA',
      threshold: 0.5,
      version: 'digits',
    });
    expect(digits).toMatchObject({ auroc: null, sensitivity: null, specificity: null, threshold: null });
    expect(decideScreening(cand, digits, 0)).toMatchObject({ promote: true, auroc: { promoted: null, ok: true } });
    expect(() => decideScreening(cand, screen(perfect, 0.7), 2)).toThrow(/margin/);
  });

  it("applies the model's temperature before its threshold", () => {
    // p = 0.9 flattens to about 0.68 at T = 3: below a 0.7 threshold, as are 0.85 and 0.8.
    const p = rows([0.9, 0.85, 0.8, 0.3, 0.2, 0.1]);
    const at = (temperature: number) =>
      scoreScreening(p, CLASSES, TRUTH, { temperature, positiveClass: 'PNEUMONIA', threshold: 0.7 });
    expect(at(1).sensitivity).toBe(1);
    expect(at(3).sensitivity).toBe(0);
    expect(at(3).auroc).toBe(1);
  });
});
