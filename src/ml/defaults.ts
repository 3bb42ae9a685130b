/**
 * Training defaults shared by `triage train` (src/cli/commands/train.ts) and the retraining runs
 * (src/jobs/manifest.ts). Free of TensorFlow.js, so planning a run does not load it.
 */
import type { AugmentOptions } from './train';

export interface TrainingDefaults {
  epochs: number;
  augment: AugmentOptions;
  learningRateDecay: number;
  patience: number;
  /** Decay of the weights' moving average (0: none); see TrainOptions.weightAverage. */
  weightAverage?: number;
}

/**
 * Training defaults of the screening CNN on radiographs (xray profile): light geometric and
 * photometric augmentation (no flips: a radiograph has a side), balanced class weights, a decaying
 * learning rate, early stopping on the patient-held-out validation loss.
 */
export const XRAY_DEFAULTS: TrainingDefaults & { batchSize: number } = {
  epochs: 16,
  batchSize: 32,
  augment: { shift: 8, rotate: 7, scale: 0.1, brightness: 0.08, contrast: 0.15 },
  learningRateDecay: 0.88,
  patience: 6,
};
