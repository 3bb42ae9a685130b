/**
 * The batch-norm training kernels (TriageBatchNormTrain / TriageBatchNormTrainGrad) and the layer
 * that uses them (models.ts batchNormalization) against tfjs's own arithmetic on the reference cpu
 * backend: tf.moments + tf.batchNorm and their gradients for the kernels, the stock
 * BatchNormalization layer for the layer (forward, moving statistics, trained weights), and a saved
 * model that loads as a plain BatchNormalization. Odd channel counts take the JS loops, C % 4 == 0
 * the SIMD ones. Tolerance: 1e-4 relative to the reference's scale.
 */
import * as tf from '@tensorflow/tfjs';
import {
  BN_TRAIN_GRAD_KERNEL,
  BN_TRAIN_KERNEL,
  batchNormKernelsActive,
  batchNormTraining,
  registerWasmTrainingKernels,
  setSimdKernelsEnabled,
} from '@image-triage/tfjs-wasm-kernels';
import { batchNormalization, linearConv2d } from '../../../../src/ml/models';
import {
  compareBackends,
  onBackend,
  randomArray,
  relError,
  sizeOf,
} from '../../../../packages/tfjs-wasm-kernels/test/compare';

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

/**
 * A small model around one batch-norm layer: conv (no bias) -> BN -> relu -> GAP -> dense softmax,
 * with the project's conv and batch-norm layers (models.ts) or tfjs's own.
 */
function bnModel(channels: number, project = true): tf.LayersModel {
  const m = tf.sequential();
  const conv: Parameters<typeof tf.layers.conv2d>[0] = {
    inputShape: [6, 7, 2],
    filters: channels,
    kernelSize: 3,
    padding: 'same',
    useBias: false,
    kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }),
  };
  m.add(project ? linearConv2d(conv) : tf.layers.conv2d(conv));
  // A low momentum so that the moving statistics move visibly.
  m.add(project ? batchNormalization({ momentum: 0.9 }) : tf.layers.batchNormalization({ axis: -1, momentum: 0.9 }));
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(tf.layers.globalAveragePooling2d({}));
  m.add(
    tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
  );
  m.compile({ optimizer: tf.train.sgd(0.5), loss: 'categoricalCrossentropy' });
  return m;
}

const N = 5;
const xData = randomArray(N * 6 * 7 * 2, 41, 0, 2);
const yData = Float32Array.from({ length: N * 3 }, (_, i) => (i % 3 === Math.floor(i / 3) % 3 ? 1 : 0));

/** Trains two steps on the named backend; returns the BN layer's forward outputs and every weight after. */
async function trainTwice(
  backend: 'cpu' | 'wasm',
  channels: number,
  project: boolean,
): Promise<{ forward: Float32Array; weights: Float32Array[]; kernels: string[] }> {
  expect(await tf.setBackend(backend)).toBe(true);
  const model = bnModel(channels, project);
  const bn = model.layers[1] as tf.layers.Layer;
  const x = tf.tensor4d(xData, [N, 6, 7, 2]);
  const y = tf.tensor2d(yData, [N, 3]);
  // The layer's training-mode output on the conv's output.
  const forward = tf.tidy(() => bn.apply(model.layers[0]?.apply(x) as tf.Tensor, { training: true }) as tf.Tensor);
  const forwardData = Float32Array.from(await forward.data());
  forward.dispose();
  // apply() in training mode updated the moving statistics: start the training from fresh ones.
  bn.setWeights(bn.getWeights().map((w, i) => (i === 2 ? tf.zerosLike(w) : i === 3 ? tf.onesLike(w) : w)));
  const profile = await tf.profile(async () => {
    await model.trainOnBatch(x, y);
  });
  await model.trainOnBatch(x, y);
  const weights = await Promise.all(model.getWeights().map(async (w) => Float32Array.from(await w.data())));
  tf.dispose([x, y]);
  model.dispose();
  return { forward: forwardData, weights, kernels: profile.kernels.map((k) => k.name) };
}

describe.each([3, 8])('batchNormalization layer with %i channels', (channels) => {
  it('trains on wasm through the kernels as the stock layers do on cpu: output, moving mean and variance, every weight', async () => {
    const ref = await trainTwice('cpu', channels, false);
    const got = await trainTwice('wasm', channels, true);
    expect(ref.kernels).not.toContain(BN_TRAIN_KERNEL);
    expect(got.kernels).toContain(BN_TRAIN_KERNEL);
    expect(got.kernels).toContain(BN_TRAIN_GRAD_KERNEL);
    // The stock Conv2D (tf.fused.conv2d) computes the gradient of the model's input; linearConv2d does not.
    expect(ref.kernels).toContain('Conv2DBackpropInput');
    expect(got.kernels).not.toContain('Conv2DBackpropInput');
    expect(got.kernels).toContain('Conv2DBackpropFilter');
    expect(relError(got.forward, ref.forward)).toBeLessThan(TOL);
    // conv kernel, gamma, beta, moving mean, moving variance, dense kernel, dense bias
    expect(got.weights.length).toBe(7);
    expect(ref.weights.length).toBe(7);
    const [, gamma, beta, movingMean, movingVar] = ref.weights as [
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    // Training moved them all away from their initial values.
    expect(gamma.some((v) => Math.abs(v - 1) > 1e-3)).toBe(true);
    expect(beta.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    expect(movingMean.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    expect(movingVar.some((v) => Math.abs(v - 1) > 1e-3)).toBe(true);
    for (let i = 0; i < ref.weights.length; i++)
      expect(relError(got.weights[i] as Float32Array, ref.weights[i] as Float32Array)).toBeLessThan(TOL);
  });
});

describe('a model with batchNormalization layers, saved', () => {
  it('serialises them as plain BatchNormalization and loads and predicts identically', async () => {
    await tf.setBackend('wasm');
    const model = bnModel(4);
    const x = tf.tensor4d(xData, [N, 6, 7, 2]);
    const y = tf.tensor2d(yData, [N, 3]);
    await model.trainOnBatch(x, y);
    const topology = model.toJSON(null, false) as unknown as { config: { layers: { class_name: string }[] } };
    expect(topology.config.layers.map((l) => l.class_name)).toEqual([
      'Conv2D',
      'BatchNormalization',
      'Activation',
      'GlobalAveragePooling2D',
      'Dense',
    ]);
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    if (artifacts === undefined) throw new Error('nothing saved');
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    expect(loaded.layers[1]?.getClassName()).toBe('BatchNormalization');
    const expected = await onBackend('wasm', () => model.predict(x));
    for (const backend of ['wasm', 'cpu'] as const) {
      const [p] = await onBackend(backend, () => loaded.predict(x));
      expect(relError(p as Float32Array, expected[0] as Float32Array)).toBeLessThan(TOL);
    }
    await tf.setBackend('wasm');
    tf.dispose([x, y]);
    model.dispose();
    loaded.dispose();
  });
});
