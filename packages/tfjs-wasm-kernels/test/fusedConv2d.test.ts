/**
 * The project FusedConv2D (generated SIMD convolution with the bias and activation fused into it)
 * against tfjs's reference cpu backend on random inputs, and the cases it leaves to the stock
 * XNNPACK kernel. Tolerance: 1e-4 relative to the reference's scale.
 */
import * as tf from '@tensorflow/tfjs';
import {
  makeFusedConv2dWasm,
  registerWasmTrainingKernels,
  registeredWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from '../src';
import { compareBackends, randomArray, sizeOf } from './compare';

const TOL = 1e-4;
type Pad = 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]];
type Activation = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'elu' | 'sigmoid';

interface FusedCase {
  x: [number, number, number, number];
  w: [number, number, number, number];
  stride?: number | [number, number];
  pad?: Pad;
  activation: Activation;
  bias?: boolean;
  dilation?: number;
}

/** tf.fused.conv2d on inputs made from fixed seeds (the same on both backends). */
function fusedConv(c: FusedCase): () => tf.Tensor {
  const xs = randomArray(sizeOf(c.x), 31, -2, 2);
  const ws = randomArray(sizeOf(c.w), 32);
  const cout = c.w[3];
  const bs = randomArray(cout, 33);
  const alphas = randomArray(cout, 34, 0, 0.5);
  return () =>
    tf.fused.conv2d({
      x: tf.tensor4d(xs, c.x),
      filter: tf.tensor4d(ws, c.w),
      strides: c.stride ?? 1,
      pad: c.pad ?? 'valid',
      dilations: c.dilation ?? 1,
      bias: c.bias === false ? undefined : tf.tensor1d(bs),
      activation: c.activation,
      preluActivationWeights: c.activation === 'prelu' ? tf.tensor1d(alphas) : undefined,
      leakyreluAlpha: c.activation === 'leakyrelu' ? 0.2 : undefined,
    });
}

/** Every field explicit, for the test names. */
const withDefaults = (cases: FusedCase[]): Required<FusedCase>[] =>
  cases.map((c) => ({ stride: 1, pad: 'valid', bias: true, dilation: 1, ...c }));

const simdCases = withDefaults([
  // the cnn model's three convolutions, batch 1 and 4
  { x: [1, 28, 28, 1], w: [3, 3, 1, 32], activation: 'relu' },
  { x: [4, 26, 26, 32], w: [3, 3, 32, 32], activation: 'relu' },
  { x: [4, 12, 12, 32], w: [3, 3, 32, 64], activation: 'relu' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'linear' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'linear', bias: false },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'relu', bias: false },
  { x: [3, 9, 7, 2], w: [3, 3, 2, 8], stride: 2, pad: 'same', activation: 'relu' },
  {
    x: [2, 7, 8, 4],
    w: [2, 3, 4, 4],
    stride: [1, 2],
    pad: [
      [0, 0],
      [1, 2],
      [2, 0],
      [0, 0],
    ],
    activation: 'relu6',
  },
  { x: [5, 10, 11, 6], w: [1, 1, 6, 20], stride: 2, activation: 'relu' }, // cout = 20: a partial channel block
  { x: [1, 5, 9, 4], w: [5, 5, 4, 12], pad: 'same', activation: 'relu' }, // rows of 9: a partial tile
  { x: [1, 3, 3, 4], w: [3, 3, 4, 4], activation: 'relu' }, // one output position
]);

const stockCases = withDefaults([
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'prelu' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'leakyrelu' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'elu' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], activation: 'sigmoid' },
  { x: [2, 9, 9, 4], w: [3, 3, 4, 8], pad: 'same', activation: 'relu', dilation: 2 },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 6], activation: 'relu' }, // cout % 4 != 0
  { x: [1, 6, 6, 2], w: [3, 3, 2, 2], activation: 'linear', bias: false },
]);

beforeAll(async () => {
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
});

describe('registration', () => {
  it('FusedConv2D is a project kernel, registered idempotently and reversibly', () => {
    expect(registeredWasmTrainingKernels()).toContain('FusedConv2D');
    const ours = tf.getKernel('FusedConv2D', 'wasm')?.kernelFunc;
    registerWasmTrainingKernels(['FusedConv2D']);
    expect(tf.getKernel('FusedConv2D', 'wasm')?.kernelFunc).toBe(ours);
    unregisterWasmTrainingKernels();
    const stock = tf.getKernel('FusedConv2D', 'wasm')?.kernelFunc;
    expect(stock).toBeDefined();
    expect(stock).not.toBe(ours);
    registerWasmTrainingKernels();
    expect(registeredWasmTrainingKernels()).toContain('FusedConv2D');
  });
});

/** Runs the cases through a project FusedConv2D whose stock fallback is counted. */
describe('FusedConv2D', () => {
  let project: tf.KernelConfig;
  const stockCalls = jest.fn();

  beforeAll(() => {
    const k = tf.getKernel('FusedConv2D', 'wasm');
    const replaced = (k?.kernelFunc as { triageReplaced?: tf.KernelConfig } | undefined)?.triageReplaced;
    if (k == null || replaced == null) throw new Error('the project FusedConv2D is not registered');
    project = k;
    const counted: tf.KernelFunc = (args) => {
      stockCalls();
      return replaced.kernelFunc(args);
    };
    tf.unregisterKernel('FusedConv2D', 'wasm');
    tf.registerKernel({ ...project, kernelFunc: makeFusedConv2dWasm(counted) });
  });

  afterAll(() => {
    tf.unregisterKernel('FusedConv2D', 'wasm');
    tf.registerKernel(project);
  });

  beforeEach(() => stockCalls.mockClear());

  it.each(simdCases)(
    'x=$x w=$w stride=$stride pad=$pad $activation bias=$bias: the SIMD kernel matches cpu',
    async (c) => {
      const { err, reference } = await compareBackends(fusedConv(c));
      expect(stockCalls).not.toHaveBeenCalled();
      expect(reference[0]?.some((v) => v !== 0)).toBe(true);
      if (c.activation !== 'linear') expect(reference[0]?.some((v) => v === 0)).toBe(true); // relu cut something off
      expect(err).toBeLessThan(TOL);
    },
  );

  it.each(stockCases)(
    'x=$x w=$w $activation bias=$bias dilation=$dilation: the stock kernel, matching cpu',
    async (c) => {
      const { err } = await compareBackends(fusedConv(c));
      expect(stockCalls).toHaveBeenCalledTimes(1);
      expect(err).toBeLessThan(TOL);
    },
  );

  it('leaves NCHW to the stock kernel (which refuses it)', async () => {
    await tf.setBackend('wasm');
    expect(() =>
      tf.tidy(() =>
        tf.fused.conv2d({
          x: tf.zeros<tf.Rank.R4>([1, 4, 6, 6]),
          filter: tf.zeros<tf.Rank.R4>([3, 3, 4, 8]),
          strides: 1,
          pad: 'valid',
          dataFormat: 'NCHW',
          activation: 'relu',
        }),
      ),
    ).toThrow(/NHWC/);
    expect(stockCalls).toHaveBeenCalledTimes(1);
  });

  it('a linear fused conv keeps its gradients (the forward pass runs fused under the tape)', async () => {
    const c: FusedCase = { x: [2, 8, 8, 4], w: [3, 3, 4, 8], pad: 'same', activation: 'linear' };
    const xs = randomArray(sizeOf(c.x), 41);
    const ws = randomArray(sizeOf(c.w), 42);
    const bs = randomArray(8, 43);
    const { err } = await compareBackends(() => {
      const f = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor =>
        tf.fused
          .conv2d({
            x: x as tf.Tensor4D,
            filter: w as tf.Tensor4D,
            strides: 1,
            pad: 'same',
            bias: b,
            activation: 'linear',
          })
          .square()
          .sum();
      return tf.grads(f)([tf.tensor4d(xs, c.x), tf.tensor4d(ws, c.w), tf.tensor1d(bs)]);
    });
    expect(stockCalls).not.toHaveBeenCalled();
    expect(err).toBeLessThan(TOL);
  });
});
