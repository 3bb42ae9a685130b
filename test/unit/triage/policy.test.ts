import { decideReview } from '../../../src/triage/policy';

const fine = { blank: false, nearConstant: false, warnings: ['inverted', 'upscaled'] };

describe('review policy', () => {
  it('auto-accepts a confident prediction of a clean image', () => {
    const d = decideReview([0.01, 0.97, 0.02], { confidence: 0.9 }, fine);
    expect(d).toEqual({ flagged: false, reasons: [], priority: expect.any(Number) });
    expect(d.priority).toBeLessThan(1);
  });

  it('flags below the card threshold and orders by uncertainty', () => {
    const a = decideReview([0.4, 0.6], { confidence: 0.9 }, fine);
    const b = decideReview([0.2, 0.8], { confidence: 0.9 }, fine);
    expect(a.reasons).toEqual(['low-confidence']);
    expect(a.priority).toBeGreaterThan(b.priority);
    expect(b.priority).toBeGreaterThanOrEqual(1);
  });

  it('flags everything when the card has no selective threshold', () => {
    expect(decideReview([0, 1], { confidence: null }, fine).reasons).toEqual(['low-confidence']);
  });

  it('puts abnormal findings first, most probable first, even when confident', () => {
    const t = { confidence: 0.5, abnormal: { classIndex: 1, threshold: 0.1 } };
    const sure = decideReview([0.05, 0.95], t, fine);
    const maybe = decideReview([0.85, 0.15], t, fine);
    const normal = decideReview([0.95, 0.05], t, fine);
    expect(sure.reasons).toEqual(['abnormal']);
    expect(maybe.reasons).toEqual(['abnormal']);
    expect(normal.flagged).toBe(false);
    expect(sure.priority).toBeGreaterThan(maybe.priority);
    expect(maybe.priority).toBeGreaterThanOrEqual(2);
    expect(decideReview([0.3, 0.7], { confidence: 0.99 }, fine).priority).toBeLessThan(2);
  });

  it('flags image problems but not informational notes', () => {
    expect(
      decideReview([0, 1], { confidence: 0.5 }, { blank: true, nearConstant: false, warnings: [] }).reasons,
    ).toEqual(['image-quality']);
    expect(
      decideReview([0, 1], { confidence: 0.5 }, { blank: false, nearConstant: false, warnings: ['tiny-ink'] }).reasons,
    ).toEqual(['image-quality']);
    expect(
      decideReview(
        [0, 1],
        { confidence: 0.5 },
        { blank: false, nearConstant: false, warnings: ['inverted', 'off-centre', 'alpha-flattened-on-white'] },
      ).flagged,
    ).toBe(false);
  });
});
