import { auroc, rocCurve } from '../../../src/ml/calibration';
import { evaluateProbabilities } from '../../../src/ml/evaluate';
import { thresholdsOf } from '../../../src/handlers/infer';
import { decideReview } from '../../../src/triage/policy';
import { incompatibility } from '../../../src/registry/registry';
import type { ModelCard } from '../../../src/ml/modelStore';

describe('AUROC and the ROC curve', () => {
  it('counts ordered pairs, ties as one half', () => {
    // positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4.
    expect(auroc([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0])).toBeCloseTo(0.75, 12);
    expect(auroc([0.5, 0.5], [1, 0])).toBeCloseTo(0.5, 12);
    expect(auroc([0.2, 0.8], [0, 1])).toBe(1);
    expect(auroc([0.2, 0.8], [1, 1])).toBeNaN();
  });

  it('walks from (0, 0) to (1, 1), one point per distinct score', () => {
    const roc = rocCurve([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0]);
    expect(roc.map((p) => [p.fpr, p.tpr])).toEqual([
      [0, 0],
      [0, 0.5],
      [0.5, 0.5],
      [0.5, 1],
      [1, 1],
    ]);
  });
});

/** A two-class screening problem: positives score 0.6..0.99, negatives 0.01..0.7. */
function problem(n: number, shift = 0): { probs: number[]; labels: number[] } {
  const probs: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const pos = i % 3 !== 0;
    const p = Math.min(
      0.999,
      Math.max(
        0.001,
        (pos ? 0.6 + (0.39 * ((i * 7919) % 101)) / 100 : 0.01 + (0.69 * ((i * 104_729) % 97)) / 96) - shift,
      ),
    );
    probs.push(1 - p, p);
    labels.push(pos ? 1 : 0);
  }
  return { probs, labels };
}

describe('screening operating point', () => {
  it('chooses the threshold on validation for the target sensitivity and reports both sides', () => {
    const val = problem(300);
    const r = evaluateProbabilities({ ...problem(300), source: 't' }, ['NORMAL', 'PNEUMONIA'], val, {
      positiveClass: 'PNEUMONIA',
      targetSensitivity: 0.99,
    });
    const s = r.screening;
    expect(s?.thresholdFrom).toBe('validation');
    expect(s?.validation?.sensitivity).toBeGreaterThanOrEqual(0.99);
    expect(s?.validation?.positives).toBe(200);
    expect(s?.validation?.negatives).toBe(100);
    // Negatives above 0.6 are flagged: about 13% of them; the rest are cleared.
    expect(s?.test.specificity).toBeGreaterThan(0.8);
    expect(s?.test.specificity).toBeLessThan(0.95);
    expect(s?.test.auroc).toBeGreaterThan(0.95);
    expect(s?.test.atHalf.sensitivity).toBe(1);
    expect(s?.roc[0]).toEqual({ threshold: Infinity, fpr: 0, tpr: 0 });
  });

  it('a saved model is judged at its own card threshold, not one refitted on the new data', () => {
    // The new data scores everything 0.2 lower: at the card's threshold sensitivity drops.
    const shifted = problem(300, 0.2);
    const r = evaluateProbabilities({ ...shifted, source: 'other folder' }, ['NORMAL', 'PNEUMONIA'], undefined, {
      positiveClass: 'PNEUMONIA',
      fixed: { temperature: 1, screeningThreshold: 0.6 },
    });
    expect(r.screening?.thresholdFrom).toBe('model card');
    expect(r.screening?.threshold).toBe(0.6);
    expect(r.screening?.validation).toBeUndefined();
    expect(r.screening?.test.sensitivity).toBeLessThan(0.6);
    expect(r.calibration.temperature).toBe(1);
  });
});

function card(over: Partial<ModelCard> = {}): ModelCard {
  return {
    version: 'v1',
    createdAt: '2026-12-01T00:00:00Z',
    architecture: 'screen',
    backend: { name: 'wasm', tfjsVersion: '4.22.0' },
    data: { source: 't', manifestHash: 'h', trainImages: 1, validationImages: 1 },
    preprocessing: { profile: 'xray', version: '1.0.0' },
    classNames: ['NORMAL', 'PNEUMONIA'],
    inputShape: [128, 128, 1],
    metrics: {},
    temperature: 1,
    thresholds: {
      selective: { targetError: 0.005, threshold: 0.99, validationCoverage: 0.5 },
      screening: { positiveClass: 'PNEUMONIA', targetSensitivity: 0.99, threshold: 0.3, validationSpared: 0.2 },
    },
    ...over,
  };
}

describe('serving a screening model', () => {
  it('flags at or above the card threshold and clears the rest, whatever the top-class confidence', () => {
    const t = thresholdsOf(card());
    expect(t.confidence).toBeUndefined();
    // p(PNEUMONIA) 0.29: cleared although only 71% confident of NORMAL.
    expect(decideReview([0.71, 0.29], t, undefined)).toMatchObject({ flagged: false, reasons: [] });
    const hit = decideReview([0.7, 0.3], t, undefined);
    expect(hit.flagged).toBe(true);
    expect(hit.reasons).toEqual(['abnormal']);
    // Likely pneumonia comes first on the worklist.
    expect(decideReview([0.1, 0.9], t, undefined).priority).toBeGreaterThan(hit.priority);
    // A model without a screening threshold keeps the selective rule.
    expect(
      thresholdsOf(
        card({ thresholds: { selective: { targetError: 0.005, threshold: 0.99, validationCoverage: 0.5 } } }),
      ).confidence,
    ).toBe(0.99);
  });

  it("refuses a model whose profile or input size is not the instance's, naming both", () => {
    expect(incompatibility(card(), { profile: 'xray', xraySize: 128 })).toBeUndefined();
    expect(incompatibility(card(), { profile: 'xray', xraySize: 224 })).toMatch(
      /takes 128x128x1 inputs, but this instance's xray profile makes 224x224x1 images \(TRIAGE_XRAY_SIZE=224\)/,
    );
    expect(incompatibility(card(), { profile: 'mnist', xraySize: 128 })).toMatch(
      /xray profile, but this instance preprocesses uploads with the mnist profile/,
    );
  });
});
