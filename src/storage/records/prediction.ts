/** The prediction record: what infer wrote for an image (predictions/{name}.json, and flagged/{name}.json when a reviewer must look). */
/** Why a prediction goes to a reviewer (src/triage/policy.ts decides). */
export type ReviewReason = 'low-confidence' | 'abnormal' | 'image-quality';

/** The review decision a prediction record carries. */
export interface ReviewDecision {
  flagged: boolean;
  reasons: ReviewReason[];
  /** Larger is more urgent: [2, 3) abnormal, [1, 2) other flagged, [0, 1) not flagged. */
  priority: number;
}

export interface PredictionRecord {
  upload: string;
  source: { sha256: string };
  model: { version: string; architecture: string; createdAt: string };
  backend: { name: string; tfjsVersion: string };
  preprocessing: { profile: string; version: string };
  classNames: string[];
  /** Calibrated probabilities by class name. */
  probabilities: Record<string, number>;
  topClass: string;
  confidence: number;
  review: ReviewDecision;
  /**
   * The rule the review decision applied, from the model card: a screening model's positive class
   * and threshold (flagged when its probability is at or above it), or the selective confidence
   * threshold (null: every prediction is reviewed).
   */
  threshold: { kind: 'screening'; positiveClass: string; value: number } | { kind: 'confidence'; value: number | null };
  timings: { loadMs: number; predictMs: number; batchSize: number; totalMs: number };
  time: string;
  instance: string;
}
