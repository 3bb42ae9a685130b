import { decide, riskOfMostConfident, scoreHeldOut, HeldOutScores } from '../../../src/jobs/gate';

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
    expect(d).toMatchObject({ promote: true, accuracy: { promoted: null, ok: true } });
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
    expect(d.reason).toMatch(/no worse than v1 \(margin 0\): held-out accuracy 80.00% vs 60.00%; selective error 0.00% vs 50.00% at coverage 40.00% \(2 of 5 images\)/);
  });

  it('refuses a candidate with lower accuracy, naming the figures', () => {
    const cand = scores([0.9, 0.8, 0.7, 0.6], [1, 0, 0, 0], null);
    const old = scores([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0], 0.95, 'v7');
    const d = decide(cand, old, 0);
    expect(d.promote).toBe(false);
    expect(d.accuracy.ok).toBe(false);
    expect(d.reason).toMatch(/^worse than v7: held-out accuracy 25.00% vs 75.00% is worse by more than the margin 0$/);
  });

  it('refuses a candidate whose auto-accepted images hold more errors than the promoted model\'s most confident ones', () => {
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

  it('applies the model\'s temperature before thresholding', () => {
    const probs = [0.9, 0.1];
    expect(scoreHeldOut(probs, ['a', 'b'], ['a'], 1, 0.85).selective.accepted).toBe(1);
    // T = 3 flattens 0.9 to about 0.67: below the threshold.
    expect(scoreHeldOut(probs, ['a', 'b'], ['a'], 3, 0.85).selective.accepted).toBe(0);
  });
});
