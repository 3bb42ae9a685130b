/**
 * TriageWinogradConv2D (src/winograd.ts) against the direct convolution of tfjs's cpu backend on
 * random tensors, and the geometries it leaves to FusedConv2D.
 */
import * as tf from '@tensorflow/tfjs';
import { registerWasmTrainingKernels, WINOGRAD_KERNEL, winogradFilter } from '../src';
import { onBackend, randomArray, relError, sizeOf } from './compare';

interface Case {
  x: [number, number, number, number];
  cout: number;
  pad: 'same' | 'valid';
  relu: boolean;
  /** 2x2 / stride 2 max pooling of the output too. */
  pool?: boolean;
}

/** The Winograd kernel on wasm and the direct fused convolution on cpu, from the same arrays. */
async function compare(c: Case, xs: Float32Array): Promise<{ err: number }> {
  const cin = c.x[3];
  const ws = randomArray(9 * cin * c.cout, 7 + cin, -0.3, 0.3);
  const bs = randomArray(c.cout, 9, -0.5, 0.5);
  const direct = (): tf.Tensor => {
    const y = tf.fused.conv2d({
      x: tf.tensor4d(xs, c.x),
      filter: tf.tensor4d(ws, [3, 3, cin, c.cout]),
      bias: tf.tensor1d(bs),
      strides: 1,
      pad: c.pad,
      activation: c.relu ? 'relu' : 'linear',
    });
    return c.pool === true ? tf.maxPool(y, 2, 2, 'valid') : y;
  };
  const [want] = await onBackend('cpu', direct);
  const [got] = await onBackend('wasm', () => {
    const inputs = {
      x: tf.tensor4d(xs, c.x),
      u: tf.tensor3d(winogradFilter(ws, cin, c.cout), [36, cin, c.cout]),
      filter: tf.tensor4d(ws, [3, 3, cin, c.cout]),
      bias: tf.tensor1d(bs),
    };
    return tf
      .engine()
      .runKernel<tf.Tensor>(WINOGRAD_KERNEL, inputs, { pad: c.pad, relu: c.relu, pool: c.pool === true });
  });
  expect(got?.length).toBe(want?.length);
  return { err: relError(got as Float32Array, want as Float32Array) };
}

beforeAll(async () => {
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
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
    // With the 2x2 max pool taken into the output transform.
    { x: [3, 16, 16, 8], cout: 12, pad: 'same', relu: true, pool: true },
    { x: [5, 18, 18, 16], cout: 16, pad: 'valid', relu: false, pool: true },
    { x: [2, 8, 8, 128], cout: 128, pad: 'same', relu: true, pool: true },
  ];
  it.each(cases)('%j', async (c) => {
    const { err } = await compare(c, randomArray(sizeOf(c.x), 3 + c.cout, -1, 1));
    // Winograd's transforms add float32 rounding (the direct convolution's error is ~1e-7 here):
    // measured 1.2e-6 (cin 4) to 8e-6 (cin 128) of the output's scale.
    expect(err).toBeLessThan(1e-5 * Math.max(1, Math.sqrt(c.x[3] / 16)));
  });

  it.each([false, true])(
    'shapes it does not take (output not a multiple of 4) give the direct result (pool %s)',
    async (pool) => {
      const c: Case = { x: [2, 10, 10, 4], cout: 4, pad: 'same', relu: true, pool };
      const { err } = await compare(c, randomArray(sizeOf(c.x), 5, -1, 1));
      expect(err).toBeLessThan(1e-6);
    },
  );
});
