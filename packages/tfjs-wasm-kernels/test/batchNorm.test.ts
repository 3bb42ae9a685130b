/**
 * The batch-norm training kernels (TriageBatchNormTrain / TriageBatchNormTrainGrad, through
 * batchNormTraining) against tfjs's own arithmetic on the reference cpu backend: tf.moments +
 * tf.batchNorm and their gradients; and FusedBatchNorm (tf.batchNorm with given statistics). Odd
 * channel counts take the JS loops, C % 4 == 0 the SIMD ones. Tolerance: 1e-4 relative to the
 * reference's scale.
 */
import * as tf from '@tensorflow/tfjs';
import {
  BN_TRAIN_GRAD_KERNEL,
  BN_TRAIN_KERNEL,
  batchNormKernelsActive,
  batchNormTraining,
  registerWasmTrainingKernels,
  setSimdKernelsEnabled,
} from '../src';
import { compareBackends, randomArray, sizeOf } from './compare';

const TOL = 1e-4;
const EPS = 1e-3;

beforeAll(async () => {
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
});

interface BnCase {
  x: number[];
  /** Inputs are drawn from [lo, hi): an offset far from 0 tests the variance's precision. */
  lo: number;
  hi: number;
}

const cases: BnCase[] = [
  { x: [2, 5, 6, 3], lo: -1, hi: 1 }, // C = 3: the JS loops
  { x: [3, 4, 5, 8], lo: -1, hi: 1 }, // C % 4 == 0
  { x: [1, 7, 5, 16], lo: -2, hi: 3 },
  { x: [2, 3, 3, 12], lo: 0, hi: 4 }, // C = 12: three vectors
  { x: [5, 9, 6], lo: -1, hi: 1 }, // rank 3, C = 6
  { x: [37, 4], lo: -3, hi: 1 }, // rank 2: rows not a multiple of any chunk
  { x: [4, 8, 8, 4], lo: 50, hi: 51 }, // mean 50.5, variance 1/12: sums of squares must not cancel (two SIMD chunks of 128 rows)
  { x: [2, 6, 5, 7], lo: 50, hi: 51 },
  { x: [3, 16, 16, 32], lo: -1, hi: 1 }, // many rows per channel: six chunks of 128 rows
  { x: [3, 9, 10, 20], lo: -1, hi: 2 }, // C = 20: blocks of 4 + 1 vectors, two chunks and 14 rows after
  { x: [2, 5, 7, 128], lo: 9, hi: 11 }, // C = 128: two chunks of 32 rows and 6 after
];

/** The training-mode batch norm as tfjs-layers computes it (tf.moments, tf.batchNorm). */
function reference(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  return { y: tf.batchNorm(x, mean, variance, beta, gamma, EPS), mean, variance };
}

/** The kernels where they are registered (wasm), the reference elsewhere (cpu). */
function underTest(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  return batchNormKernelsActive() ? batchNormTraining(x, gamma, beta, EPS) : reference(x, gamma, beta);
}

describe.each([true, false])('batch-norm kernels (SIMD enabled: %s)', (simd) => {
  beforeAll(() => setSimdKernelsEnabled(simd));
  afterAll(() => setSimdKernelsEnabled(true));

  it.each(cases)('x=$x in [$lo, $hi): y, mean, variance and dx, dgamma, dbeta match cpu', async ({ x, lo, hi }) => {
    const c = x[x.length - 1] as number;
    const xs = randomArray(sizeOf(x), 21, lo, hi);
    const gs = randomArray(c, 22, 0.5, 1.5);
    const bs = randomArray(c, 23);
    const ws = randomArray(sizeOf(x), 24);
    const {
      err,
      outputs,
      reference: ref,
    } = await compareBackends(() => {
      const xt = tf.tensor(xs, x);
      const g = tf.tensor1d(gs);
      const b = tf.tensor1d(bs);
      const dyWeights = tf.tensor(ws, x);
      const { y, mean, variance } = underTest(xt, g, b);
      const grads = tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => underTest(p, q, r).y.mul(dyWeights).sum())([
        xt,
        g,
        b,
      ]);
      return [y, mean, variance, ...grads];
    });
    expect(outputs).toBe(6);
    // The gradients are not trivially zero (dx sums to ~0 per channel, but not elementwise).
    expect(ref[3]?.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    expect(err).toBeLessThan(TOL);
  });
});

describe('batchNormTraining', () => {
  it('runs the two kernels on wasm, and nothing full-size besides', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor4d(randomArray(2 * 4 * 4 * 8, 31), [2, 4, 4, 8]);
    const g = tf.ones([8]);
    const b = tf.zeros([8]);
    const profile = await tf.profile(() => {
      const [dx] = tf.grads((p: tf.Tensor) => batchNormTraining(p, g, b, EPS).y.square().sum())([x]);
      return dx;
    });
    const names = profile.kernels.map((k) => k.name);
    expect(names).toContain(BN_TRAIN_KERNEL);
    expect(names).toContain(BN_TRAIN_GRAD_KERNEL);
    expect(names).not.toContain('Tile');
    tf.dispose([x, g, b]);
  });
});

describe('tf.batchNorm with given statistics (FusedBatchNorm, as at inference)', () => {
  it.each([
    { x: [2, 5, 6, 3], stats: [3], affine: true }, // JS pass
    { x: [3, 4, 5, 8], stats: [8], affine: true }, // SIMD pass
    { x: [2, 3, 4, 128], stats: [1, 1, 128], affine: true },
    { x: [4, 12], stats: [12], affine: false }, // no offset, no scale
    { x: [2, 3, 4, 4], stats: [1, 3, 1, 4], affine: true }, // not per channel: the stock kernel
  ])('x=$x statistics $stats (offset and scale: $affine) matches cpu', async ({ x, stats, affine }) => {
    const xs = randomArray(sizeOf(x), 51, -2, 3);
    const ms = randomArray(sizeOf(stats), 52);
    const vs = randomArray(sizeOf(stats), 53, 0.1, 2);
    const os = randomArray(sizeOf(stats), 54);
    const ss = randomArray(sizeOf(stats), 55, 0.5, 1.5);
    const { err } = await compareBackends(() =>
      tf.batchNorm(
        tf.tensor(xs, x),
        tf.tensor(ms, stats),
        tf.tensor(vs, stats),
        affine ? tf.tensor(os, stats) : undefined,
        affine ? tf.tensor(ss, stats) : undefined,
        EPS,
      ),
    );
    expect(err).toBeLessThan(TOL);
  });
});
