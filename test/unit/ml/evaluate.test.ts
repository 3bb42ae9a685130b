import { classificationMetrics, evaluateProbabilities, positiveClassIndex } from '../../../src/ml/evaluate';
import { cardFieldsFromReport } from '../../../src/ml/modelStore';
import { describeReport } from '../../../src/cli/commands/train';

describe('classification metrics', () => {
  it('computes accuracy, per-class precision/recall and the confusion matrix by hand', () => {
    // true: a a b b c ; predicted: a b b b a
    const probs = [0.8, 0.1, 0.1, 0.3, 0.6, 0.1, 0.1, 0.8, 0.1, 0.2, 0.7, 0.1, 0.5, 0.2, 0.3];
    const m = classificationMetrics(probs, [0, 0, 1, 1, 2], ['a', 'b', 'c']);
    expect(m.accuracy).toBeCloseTo(3 / 5, 12);
    expect(m.confusion).toEqual([
      [1, 1, 0],
      [0, 2, 0],
      [1, 0, 0],
    ]);
    expect(m.perClass).toEqual([
      { class: 'a', precision: 0.5, recall: 0.5, support: 2 },
      { class: 'b', precision: 2 / 3, recall: 1, support: 2 },
      { class: 'c', precision: 0, recall: 0, support: 1 },
    ]);
    expect(m.loss).toBeCloseTo(-(Math.log(0.8) + Math.log(0.3) + Math.log(0.8) + Math.log(0.7) + Math.log(0.3)) / 5, 6);
  });
});

describe('evaluateProbabilities', () => {
  it('reports calibration, AURC and a validation-chosen selective threshold', () => {
    const probs: number[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 200; i++) {
      const confident = i % 10 !== 0;
      probs.push(confident ? 0.95 : 0.6, confident ? 0.05 : 0.4);
      labels.push(confident ? 0 : i % 20 === 0 ? 1 : 0); // the unsure ones are right half the time
    }
    const r = evaluateProbabilities(
      { probs, labels, source: 't' },
      ['x', 'y'],
      { probs, labels },
      { targetSelectiveError: 0.005 },
    );
    expect(r.n).toBe(200);
    // The threshold sits at the confident group's calibrated confidence (temperature scaling moves it, not the order).
    expect(r.calibration.temperature).toBeLessThan(1);
    expect(r.selective?.threshold).toBeGreaterThan(0.95);
    expect(r.selective?.test.coverage).toBeCloseTo(0.9, 12);
    expect(r.selective?.test.risk).toBe(0);
    expect(r.aurc).toBeLessThan(r.loss);
    expect(r.calibration.eceAfter).toBeLessThanOrEqual(r.calibration.eceBefore + 1e-9);
    expect(r.screening).toBeUndefined(); // not an abnormal/normal model
  });

  it('for abnormal/normal models reports the sensitivity threshold and the share spared from review', () => {
    // p(abnormal) for 4 abnormal and 6 normal images
    const pAbn = [0.9, 0.8, 0.7, 0.4, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01];
    const labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]; // classNames: abnormal = 0
    const probs = pAbn.flatMap((p) => [p, 1 - p]);
    const r = evaluateProbabilities(
      { probs, labels, source: 't' },
      ['abnormal', 'normal'],
      { probs, labels },
      { targetSensitivity: 0.99 },
    );
    expect(r.screening?.positiveClass).toBe('abnormal');
    expect(r.screening?.test.sensitivity).toBe(1);
    // every abnormal image flagged: the lowest abnormal score is 0.4 (calibrated, same order), so
    // the normals below it (0.3 0.2 0.1 0.05 0.01) are spared: 5 of 10.
    expect(r.screening?.test.spared).toBeCloseTo(0.5, 12);
    expect(positiveClassIndex(['normal', 'Abnormal'])).toBe(1);
    expect(positiveClassIndex(['a', 'b', 'c'])).toBeUndefined();
    expect(() => positiveClassIndex(['a', 'b'], 'z')).toThrow(/not one of/);
  });
});

describe('a selective threshold that cannot reach its target on validation', () => {
  // Three classes, so no screening rule: the most confident validation prediction is already wrong.
  const probs = [0.1, 0.8, 0.1, 0.7, 0.2, 0.1, 0.2, 0.2, 0.6, 0.3, 0.4, 0.3];
  const labels = [0, 1, 0, 1];
  const report = evaluateProbabilities(
    { probs, labels, source: 't' },
    ['a', 'b', 'c'],
    { probs, labels },
    { targetSelectiveError: 0.005 },
  );

  it('says so in the model card and in the printed report', () => {
    expect(report.selective?.threshold).toBeNull();
    const card = cardFieldsFromReport(report);
    expect(card.thresholds.selective).toEqual({
      targetError: 0.005,
      threshold: null,
      validationCoverage: 0,
      unreached:
        'no confidence threshold reaches the target error of 0.50% on validation data: every prediction is flagged for review',
    });
    expect(describeReport(report)).toContain(`selective: ${card.thresholds.selective?.unreached}`);
  });

  it('leaves the card without the note when the target is reached', () => {
    const reached = evaluateProbabilities(
      { probs, labels, source: 't' },
      ['a', 'b', 'c'],
      { probs, labels },
      { targetSelectiveError: 0.8 },
    );
    expect(reached.selective?.threshold).not.toBeNull();
    expect(cardFieldsFromReport(reached).thresholds.selective).not.toHaveProperty('unreached');
  });
});
