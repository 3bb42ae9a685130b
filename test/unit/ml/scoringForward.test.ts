/**
 * The scoring path on radiographs of test/fixtures/chest-xray (CC BY 4.0, see its ATTRIBUTION.md):
 * the Winograd kernel (@image-triage/tfjs-wasm-kernels TriageWinogradConv2D) against tfjs's cpu
 * direct convolution, and ml/inference.ts's forward pass (batch norm folded into the convolutions,
 * Winograd for the screening CNN's 3x3 layers) against model.predict.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { WINOGRAD_KERNEL, winogradFilter } from '@image-triage/tfjs-wasm-kernels';
import { initBackend } from '../../../src/ml/backend';
import { forwardPass, scoreFlat } from '../../../src/ml/inference';
import { buildModel } from '../../../src/ml/models';
import { preprocessImage } from '../../../src/imaging';
import { onBackend, randomArray, relError } from '../../../packages/tfjs-wasm-kernels/test/compare';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'chest-xray');

beforeAll(async () => {
  expect((await initBackend('wasm')).name).toBe('wasm');
});

afterAll(async () => {
  await tf.setBackend('wasm');
});

it('Winograd matches the direct convolution on radiographs (64x64, the image widened to 4 channels)', async () => {
  const names = ['NORMAL', 'PNEUMONIA'].map((k) =>
    join(FIXTURES, k, readdirSync(join(FIXTURES, k)).sort()[0] as string),
  );
  const images = await Promise.all(
    names.map(async (f) => {
      const r = await preprocessImage(readFileSync(f), {
        profile: 'xray',
        xraySize: 64,
        maxInputBytes: 1 << 26,
        maxPixels: 5e7,
      });
      return r.pixels;
    }),
  );
  // Four channels per pixel: the image and three shifted copies of its intensities.
  const xs = new Float32Array(images.length * 64 * 64 * 4);
  images.forEach((p, b) => p.forEach((v, i) => [0, 1, 2, 3].forEach((k) => (xs[(b * 4096 + i) * 4 + k] = v - k / 4))));
  const shape: [number, number, number, number] = [images.length, 64, 64, 4];
  const ws = randomArray(9 * 4 * 16, 11, -0.3, 0.3);
  const bs = randomArray(16, 9, -0.5, 0.5);
  const [want] = await onBackend('cpu', () =>
    tf.fused.conv2d({
      x: tf.tensor4d(xs, shape),
      filter: tf.tensor4d(ws, [3, 3, 4, 16]),
      bias: tf.tensor1d(bs),
      strides: 1,
      pad: 'same',
      activation: 'relu',
    }),
  );
  const [got] = await onBackend('wasm', () => {
    const inputs = {
      x: tf.tensor4d(xs, shape),
      u: tf.tensor3d(winogradFilter(ws, 4, 16), [36, 4, 16]),
      filter: tf.tensor4d(ws, [3, 3, 4, 16]),
      bias: tf.tensor1d(bs),
    };
    return tf.engine().runKernel<tf.Tensor>(WINOGRAD_KERNEL, inputs, { pad: 'same', relu: true });
  });
  expect(relError(got as Float32Array, want as Float32Array)).toBeLessThan(1e-5);
});

describe('the scoring forward pass of the screening CNN', () => {
  it('gives model.predict probabilities (1e-5) on radiographs, with batch norm statistics that are not the identity', async () => {
    await tf.setBackend('wasm');
    const size = 64;
    const model = buildModel('screen', { inputShape: [size, size, 1], classNames: ['NORMAL', 'PNEUMONIA'], seed: 9 });
    let seed = 1;
    for (const l of model.layers)
      if (l.getClassName() === 'BatchNormalization') {
        // gamma, beta, moving mean, moving variance
        const ranges: [number, number][] = [
          [0.5, 1.5],
          [-0.2, 0.2],
          [-0.3, 0.3],
          [0.3, 2],
        ];
        l.setWeights(l.getWeights().map((w, k) => tf.tensor(randomArray(w.size, seed++, ...ranges[k]!), w.shape)));
      }
    const files = ['NORMAL', 'PNEUMONIA'].flatMap((k) =>
      readdirSync(join(FIXTURES, k))
        .sort()
        .slice(0, 3)
        .map((f) => join(FIXTURES, k, f)),
    );
    const flat = new Float32Array(files.length * size * size);
    for (const [i, f] of files.entries()) {
      const r = await preprocessImage(readFileSync(f), {
        profile: 'xray',
        xraySize: size,
        maxInputBytes: 1 << 26,
        maxPixels: 5e7,
      });
      flat.set(r.pixels, i * size * size);
    }
    const forward = forwardPass(tf, model, [size, size, 1]);
    const profile = await tf.profile(() => {
      scoreFlat(tf, forward, [size, size, 1], flat, files.length);
    });
    const kernels = profile.kernels.map((k) => k.name);
    // conv2..conv5 (32, 16, 8, 4 outputs a side at 64x64 input) run as Winograd; no batch norm pass is left.
    expect(kernels.filter((k) => k === WINOGRAD_KERNEL).length).toBe(4);
    expect(kernels.some((k) => k.includes('BatchNorm'))).toBe(false);
    // Their 2x2 max pools are taken into the Winograd kernel: only conv1's is left.
    expect(kernels.filter((k) => k === 'MaxPool').length).toBe(1);
    const got = scoreFlat(tf, forward, [size, size, 1], flat, files.length);
    const want = tf.tidy(() =>
      (model.predict(tf.tensor4d(flat, [files.length, size, size, 1])) as tf.Tensor).dataSync(),
    );
    let d = 0;
    for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs((got[i] as number) - (want[i] as number)));
    expect(d).toBeLessThan(1e-5);
    // Not a trivial model: the probabilities differ between images.
    expect(Math.max(...Array.from(want)) - Math.min(...Array.from(want))).toBeGreaterThan(0.01);
    forward.dispose();
    model.dispose();
  });
});
