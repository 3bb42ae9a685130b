/**
 * TriageWinogradConv2D (kernels/winograd.ts) against the direct convolution of tfjs's cpu backend,
 * on random tensors and on radiographs of test/fixtures/chest-xray (CC BY 4.0, see its
 * ATTRIBUTION.md); and the scoring forward pass (ml/inference.ts: batch norm folded into the
 * convolutions, Winograd for the screening CNN's 3x3 layers) against model.predict.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../../src/ml/backend';
import { WINOGRAD_KERNEL, winogradFilter } from '../../../../src/ml/kernels';
import { forwardPass, scoreFlat } from '../../../../src/ml/inference';
import { buildModel } from '../../../../src/ml/models';
import { preprocessImage } from '../../../../src/imaging';
import { onBackend, randomArray, relError, sizeOf } from './compare';

const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures', 'chest-xray');

interface Case {
  x: [number, number, number, number];
  cout: number;
  pad: 'same' | 'valid';
  relu: boolean;
}

/** The Winograd kernel on wasm and the direct fused convolution on cpu, from the same arrays. */
async function compare(c: Case, xs: Float32Array): Promise<{ err: number }> {
  const cin = c.x[3];
  const ws = randomArray(9 * cin * c.cout, 7 + cin, -0.3, 0.3);
  const bs = randomArray(c.cout, 9, -0.5, 0.5);
  const direct = (): tf.Tensor =>
    tf.fused.conv2d({
      x: tf.tensor4d(xs, c.x),
      filter: tf.tensor4d(ws, [3, 3, cin, c.cout]),
      bias: tf.tensor1d(bs),
      strides: 1,
      pad: c.pad,
      activation: c.relu ? 'relu' : 'linear',
    });
  const [want] = await onBackend('cpu', direct);
  const [got] = await onBackend('wasm', () => {
    const inputs = {
      x: tf.tensor4d(xs, c.x),
      u: tf.tensor3d(winogradFilter(ws, cin, c.cout), [36, cin, c.cout]),
      filter: tf.tensor4d(ws, [3, 3, cin, c.cout]),
      bias: tf.tensor1d(bs),
    };
    return tf.engine().runKernel(WINOGRAD_KERNEL, inputs, { pad: c.pad, relu: c.relu }) as tf.Tensor;
  });
  return { err: relError(got as Float32Array, want as Float32Array) };
}

beforeAll(async () => {
  expect((await initBackend('wasm')).name).toBe('wasm');
});

afterAll(async () => {
  await tf.setBackend('wasm');
});

describe('Winograd F(4x4, 3x3) against the direct convolution (cpu backend)', () => {
  const cases: Case[] = [
    // One image, a partial chunk (4 tiles of 32), two channel blocks.
    { x: [1, 8, 8, 4], cout: 8, pad: 'same', relu: false },
    // An odd number of output-channel vectors (the narrower register block), relu.
    { x: [3, 16, 16, 8], cout: 12, pad: 'same', relu: true },
    // 'valid': 18x18 -> 16x16, no padding pass; chunks that cross images.
    { x: [5, 18, 18, 16], cout: 16, pad: 'valid', relu: true },
    // The screening CNN's conv5 (128 -> 128 at 8x8).
    { x: [2, 8, 8, 128], cout: 128, pad: 'same', relu: true },
  ];
  it.each(cases)('%j', async (c) => {
    const { err } = await compare(c, randomArray(sizeOf(c.x), 3 + c.cout, -1, 1));
    // Winograd's transforms add float32 rounding (the direct convolution's error is ~1e-7 here):
    // measured 1.2e-6 (cin 4) to 8e-6 (cin 128) of the output's scale.
    expect(err).toBeLessThan(1e-5 * Math.max(1, Math.sqrt(c.x[3] / 16)));
  });

  it('shapes it does not take (output not a multiple of 4) give the direct result', async () => {
    const c: Case = { x: [2, 10, 10, 4], cout: 4, pad: 'same', relu: true };
    const { err } = await compare(c, randomArray(sizeOf(c.x), 5, -1, 1));
    expect(err).toBeLessThan(1e-6);
  });

  it('on radiographs (64x64, the first layer widened to 4 channels)', async () => {
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
    images.forEach((p, b) =>
      p.forEach((v, i) => [0, 1, 2, 3].forEach((k) => (xs[(b * 4096 + i) * 4 + k] = v - k / 4))),
    );
    const { err } = await compare({ x: [images.length, 64, 64, 4], cout: 16, pad: 'same', relu: true }, xs);
    expect(err).toBeLessThan(1e-5);
  });
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
    // conv2..conv5 (8x8 and up at 64x64 input: 32, 16, 8, 4 outputs a side) run as Winograd; no batch norm pass is left.
    expect(kernels.filter((k) => k === WINOGRAD_KERNEL).length).toBe(4);
    expect(kernels.some((k) => k.includes('BatchNorm'))).toBe(false);
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
