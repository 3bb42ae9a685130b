/**
 * The review policy: which scored images a radiologist must see, why, and in what order.
 *   low-confidence  top-class confidence (calibrated) below the model card's threshold for the
 *                   target selective error (chosen on validation data when the model was trained)
 *   abnormal        for two-class abnormal/normal models: positive-class probability at or above
 *                   the card's sensitivity threshold
 *   image-quality   preprocessing found a problem with the image itself: blank, near-constant,
 *                   low contrast, almost no content, or content filling the frame (informational
 *                   notes such as "inverted" or "upscaled" are not problems)
 * Out-of-distribution detection is not claimed: softmax confidence is not an honest OOD signal.
 * Priority orders the worklist: abnormal first (most probable first), then least confident.
 */

import type { ReviewDecision, ReviewReason } from '../storage/records/prediction';

export interface ReviewThresholds {
  /**
   * Confidence below which a prediction is not trusted; null: the card has none (flag everything);
   * absent: no confidence rule (screening models, whose review rule is the abnormal threshold).
   */
  confidence?: number | null;
  /** For screening models: the positive class and the probability at which it is flagged. */
  abnormal?: { classIndex: number; threshold: number };
}

export interface QualitySignals {
  blank: boolean;
  nearConstant: boolean;
  warnings: string[];
}

/** Preprocessing warnings that mean the image itself is doubtful. */
export const QUALITY_PROBLEMS: ReadonlySet<string> = new Set([
  'blank',
  'near-constant',
  'low-contrast',
  'tiny-ink',
  'large-ink',
]);

export function decideReview(
  probs: ArrayLike<number>,
  thresholds: ReviewThresholds,
  quality: QualitySignals | undefined,
): ReviewDecision {
  let top = 0;
  for (let i = 1; i < probs.length; i++) if ((probs[i] ?? 0) > (probs[top] ?? 0)) top = i;
  const confidence = probs[top] ?? 0;
  const reasons: ReviewReason[] = [];
  let abnormalP = 0;
  if (thresholds.abnormal !== undefined) {
    abnormalP = probs[thresholds.abnormal.classIndex] ?? 0;
    if (abnormalP >= thresholds.abnormal.threshold) reasons.push('abnormal');
  }
  if (thresholds.confidence === null || (thresholds.confidence !== undefined && confidence < thresholds.confidence))
    reasons.push('low-confidence');
  if (
    quality !== undefined &&
    (quality.blank || quality.nearConstant || quality.warnings.some((w) => QUALITY_PROBLEMS.has(w)))
  )
    reasons.push('image-quality');
  const flagged = reasons.length > 0;
  const uncertainty = Math.min(1, Math.max(0, 1 - confidence));
  const priority = reasons.includes('abnormal')
    ? 2 + Math.min(abnormalP, 0.999999)
    : flagged
      ? 1 + uncertainty * 0.999999
      : uncertainty * 0.999999;
  return { flagged, reasons, priority: Number(priority.toFixed(6)) };
}
