/**
 * The batch-norm layer of models.ts (batchNormalization, on the kernels of
 * @image-triage/tfjs-wasm-kernels) against the stock BatchNormalization layer on the reference cpu
 * backend: forward output, moving statistics and trained weights; and a saved model that loads as a
 * plain BatchNormalization. Tolerance: 1e-4 relative to the reference's scale.
 */
import * as tf from '@tensorflow/tfjs';
import { BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, registerWasmTrainingKernels } from '@image-triage/tfjs-wasm-kernels';
import { quietTfjsNotes } from '../../../src/ml/backend';
import { batchNormalization, linearConv2d } from '../../../src/ml/models';
import { onBackend, randomArray, relError } from '../../../packages/tfjs-wasm-kernels/test/compare';

const TOL = 1e-4;

beforeAll(async () => {
  quietTfjsNotes();
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
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
