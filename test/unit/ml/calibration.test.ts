import {
  applyTemperature,
  aurc,
  expectedCalibrationError,
  fitTemperature,
  nllAtTemperature,
  reliabilityBins,
  riskCoverageCurve,
  screeningAt,
  selectiveAt,
  selectiveThreshold,
  sensitivityThreshold,
  topPrediction,
} from '../../../src/ml/calibration';

describe('expected calibration error', () => {
  it('matches a hand computation over 10 bins', () => {
    // bin [0.6,0.7): 0.6, 0.65 -> conf 0.625, acc 1/2; bin [0.9,1]: 0.9, 1.0 -> conf 0.95, acc 1.
    const conf = [0.6, 0.65, 0.9, 1.0];
    const correct = [1, 0, 1, 1];
    // ECE = 2/4*|0.5-0.625| + 2/4*|1-0.95| = 0.0625 + 0.025
    expect(expectedCalibrationError(conf, correct, 10)).toBeCloseTo(0.0875, 12);
    const bins = reliabilityBins(conf, correct, 10);
    expect(bins[6]).toMatchObject({ count: 2, accuracy: 0.5 });
    expect(bins[6]?.confidence).toBeCloseTo(0.625, 12);
    expect(bins[9]).toMatchObject({ count: 2, accuracy: 1 });
  });

  it('is zero for perfectly calibrated bins and 0 on no data', () => {
    expect(expectedCalibrationError([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0], 10)).toBeCloseTo(0, 12);
    expect(expectedCalibrationError([], [])).toBe(0);
  });
});

describe('temperature scaling', () => {
  it('T = 1 leaves probabilities unchanged; T = 2 gives sqrt-proportional probabilities', () => {
    const p = [0.8, 0.2];
    expect(Array.from(applyTemperature(p, 2, 1))).toEqual([expect.closeTo(0.8, 6), expect.closeTo(0.2, 6)]);
    // softmax(log p / 2) = sqrt(p) / sum sqrt(p)
    const s = Math.sqrt(0.8) + Math.sqrt(0.2);
    const t2 = applyTemperature(p, 2, 2);
    expect(t2[0]).toBeCloseTo(Math.sqrt(0.8) / s, 6);
    expect(topPrediction(t2, 2).predicted[0]).toBe(0);
  });

  it('NLL at T matches a hand computation', () => {
    // one sample, probs [0.8, 0.2], label 1, T = 1: -log 0.2
    expect(nllAtTemperature([0.8, 0.2], [1], 2, 1)).toBeCloseTo(-Math.log(0.2), 10);
  });

  it('fits the temperature that generated the labels (overconfident -> T > 1)', () => {
    // Two-class samples with p(class 0) = 0.9 whose labels are class 0 exactly 75% of the time:
    // the NLL-optimal calibrated probability is 0.75, i.e. softmax(log[0.9, 0.1] / T)[0] = 0.75
    // -> 9^(1/T) = 3 -> T = 2.
    const probs: number[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 400; i++) {
      probs.push(0.9, 0.1);
      labels.push(i % 4 === 0 ? 1 : 0);
    }
    const t = fitTemperature(probs, labels, 2);
    expect(t).toBeCloseTo(2, 4);
    expect(nllAtTemperature(probs, labels, 2, t)).toBeLessThan(nllAtTemperature(probs, labels, 2, 1));
  });

  it('underconfident predictions get T < 1', () => {
    const probs: number[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 100; i++) {
      probs.push(0.6, 0.4);
      labels.push(i < 99 ? 0 : 1);
    }
    expect(fitTemperature(probs, labels, 2)).toBeLessThan(0.5);
  });
});

describe('risk-coverage and AURC', () => {
  const conf = [0.9, 0.8, 0.7, 0.6];
  const correct = [1, 0, 1, 0];

  it('builds the curve from the most confident down', () => {
    const c = riskCoverageCurve(conf, correct);
    expect(c.map((p) => [p.coverage, p.risk])).toEqual([
      [0.25, 0],
      [0.5, 0.5],
      [0.75, 1 / 3],
      [1, 0.5],
    ]);
  });

  it('AURC is the mean of the risks at k = 1..N', () => {
    expect(aurc(conf, correct)).toBeCloseTo((0 + 0.5 + 1 / 3 + 0.5) / 4, 12);
    expect(aurc([0.9, 0.8], [1, 1])).toBe(0);
  });

  it('tied confidences share the risk at the end of their group', () => {
    // all tied: every sample takes the overall risk 0.5
    expect(aurc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0])).toBeCloseTo(0.5, 12);
    expect(riskCoverageCurve([0.5, 0.5, 0.4], [1, 0, 1]).map((p) => p.accepted)).toEqual([2, 3]);
  });
});

describe('selective threshold', () => {
  const conf = [0.99, 0.98, 0.97, 0.9, 0.8, 0.7];
  const correct = [1, 1, 1, 0, 1, 0];

  it('picks the lowest threshold (largest coverage) meeting the target error', () => {
    expect(selectiveThreshold(conf, correct, 0)).toEqual({ targetError: 0, threshold: 0.97, coverage: 0.5, risk: 0 });
    // 0.25 allowed: at 0.8 risk 1/5 = 0.2; at 0.7 risk 2/6 = 0.333
    const s = selectiveThreshold(conf, correct, 0.25);
    expect(s.threshold).toBe(0.8);
    expect(s.coverage).toBeCloseTo(5 / 6, 12);
    expect(s.risk).toBeCloseTo(0.2, 12);
  });

  it('returns null when not even the most confident prediction meets the target', () => {
    expect(selectiveThreshold([0.9, 0.8], [0, 1], 0.1)).toEqual({
      targetError: 0.1,
      threshold: null,
      coverage: 0,
      risk: 0,
    });
    expect(selectiveAt([0.9, 0.8], [0, 1], null)).toEqual({ coverage: 0, risk: 0, accepted: 0, errors: 0 });
  });

  it('applies a fixed threshold to other data', () => {
    expect(selectiveAt([0.95, 0.96, 0.5, 0.99], [1, 0, 0, 1], 0.95)).toEqual({
      coverage: 0.75,
      risk: 1 / 3,
      accepted: 3,
      errors: 1,
    });
  });
});

describe('screening threshold for a target sensitivity', () => {
  it('keeps enough positives at or above the threshold and reports the spared share', () => {
    // positives' scores: 0.9 0.8 0.7 0.3 ; negatives: 0.6 0.2 0.1 0.05 0.01 0.0
    const scores = [0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.05, 0.01, 0.0];
    const pos = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
    // 0.75 -> 3 of 4 positives -> threshold 0.7: flagged 0.9 0.8 0.7 -> spared 7/10 (one positive among them)
    const s = sensitivityThreshold(scores, pos, 0.75);
    expect(s.threshold).toBe(0.7);
    expect(s.sensitivity).toBe(0.75);
    expect(s.spared).toBeCloseTo(0.7, 12);
    expect(s.specificity).toBe(1);
    // 0.99 -> all 4 positives -> threshold 0.3: spared = 0.2 0.1 0.05 0.01 0.0 -> 5/10
    const all = sensitivityThreshold(scores, pos, 0.99);
    expect(all.threshold).toBe(0.3);
    expect(all.sensitivity).toBe(1);
    expect(all.spared).toBeCloseTo(0.5, 12);
    expect(screeningAt(scores, pos, 0.3)).toEqual({ sensitivity: 1, specificity: 5 / 6, spared: 0.5 });
  });
});
