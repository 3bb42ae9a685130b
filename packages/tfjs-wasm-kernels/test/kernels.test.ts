/**
 * Every project wasm kernel against tfjs's reference cpu backend on random inputs: forward ops and
 * their gradients (tf.grads / tf.variableGrads on both backends), strides 1 and 2, same / valid /
 * explicit padding, odd sizes, batch 1 and more. Tolerance: 1e-4 relative to the reference's scale.
 */
import * as tf from '@tensorflow/tfjs';
import {
  PROJECT_WASM_KERNELS,
  registerWasmTrainingKernels,
  registeredWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from '../src';
import { MAX_MODULES, setSimdKernelsEnabled, simdRuntime } from '../src/simdKernels';
import { FunctionBuilder } from '../src/wasmAsm';
import { compareBackends, onBackend, randomArray, relError, sizeOf } from './compare';

const TOL = 1e-4;
type Pad = 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]];

beforeAll(async () => {
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
});

describe('registration', () => {
  it('replaces the stock wasm kernels, is idempotent, and can be undone', () => {
    expect(registeredWasmTrainingKernels()).toEqual([...PROJECT_WASM_KERNELS]);
    const before = tf.getKernel('MaxPoolGrad', 'wasm')?.kernelFunc;
    expect(registerWasmTrainingKernels()).toEqual([...PROJECT_WASM_KERNELS]);
    expect(tf.getKernel('MaxPoolGrad', 'wasm')?.kernelFunc).toBe(before);

    unregisterWasmTrainingKernels();
    expect(registeredWasmTrainingKernels()).toEqual([]);
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined(); // stock wasm has none
    expect(tf.getKernel('MaxPoolGrad', 'wasm')).toBeDefined(); // the stock one is back
    registerWasmTrainingKernels();
    expect(registeredWasmTrainingKernels()).toEqual([...PROJECT_WASM_KERNELS]);
  });
});

interface ConvCase {
  x: [number, number, number, number];
  w: [number, number, number, number];
  stride: number | [number, number];
  pad: Pad;
}

const convCases: ConvCase[] = [
  { x: [1, 5, 5, 1], w: [3, 3, 1, 2], stride: 1, pad: 'valid' },
  { x: [3, 7, 6, 2], w: [3, 3, 2, 4], stride: 1, pad: 'same' },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 5], stride: 2, pad: 'valid' },
  { x: [2, 8, 7, 3], w: [3, 2, 3, 4], stride: 2, pad: 'same' },
  { x: [1, 10, 9, 2], w: [3, 3, 2, 3], stride: [2, 1], pad: 'same' },
  { x: [2, 6, 6, 2], w: [1, 1, 2, 3], stride: 2, pad: 'same' },
  { x: [2, 5, 5, 2], w: [5, 5, 2, 3], stride: 1, pad: 'same' },
  {
    x: [1, 7, 8, 2],
    w: [3, 3, 2, 2],
    stride: 1,
    pad: [
      [0, 0],
      [1, 2],
      [0, 1],
      [0, 0],
    ],
  },
  {
    x: [2, 7, 8, 2],
    w: [3, 3, 2, 2],
    stride: 2,
    pad: [
      [0, 0],
      [2, 0],
      [1, 1],
      [0, 0],
    ],
  },
  {
    x: [2, 8, 9, 5],
    w: [3, 3, 5, 4],
    stride: 2,
    pad: [
      [0, 0],
      [2, 1],
      [1, 2],
      [0, 0],
    ],
  }, // cin >= 4: im2col by runs, windows cut by padding
  { x: [1, 6, 7, 6], w: [2, 3, 6, 3], stride: 1, pad: 'same' },
  { x: [4, 28, 28, 1], w: [3, 3, 1, 16], stride: 1, pad: 'valid' }, // the peer CNN's first conv
  { x: [4, 13, 13, 16], w: [3, 3, 16, 32], stride: 1, pad: 'valid' }, // and its second
  // cout % 4 == 0: the SIMD kernel, with and without a padded copy of x
  { x: [1, 6, 6, 1], w: [3, 3, 1, 4], stride: 1, pad: 'valid' },
  { x: [3, 9, 7, 2], w: [3, 3, 2, 8], stride: 2, pad: 'same' },
  { x: [2, 8, 9, 5], w: [3, 3, 5, 12], stride: 2, pad: 'valid' }, // last rows/columns never read
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
  },
  { x: [2, 5, 5, 3], w: [5, 5, 3, 16], stride: 1, pad: 'same' },
  { x: [5, 10, 11, 6], w: [1, 1, 6, 20], stride: 2, pad: 'valid' }, // K = 6, cout = 20: partial register blocks
  { x: [1, 11, 10, 16], w: [3, 3, 16, 32], stride: 2, pad: 'same' },
  { x: [1, 13, 13, 16], w: [3, 3, 16, 32], stride: 1, pad: 'valid' }, // a compiled geometry, another batch size
  // SIMD Conv2D (cout % 4 == 0) and Conv2DBackpropInput (cin % 4 == 0): partial tiles and channel blocks
  { x: [3, 9, 7, 12], w: [3, 3, 12, 8], stride: 2, pad: 'valid' }, // cin = 12: blocks of 8 + 4 channels
  { x: [2, 6, 5, 8], w: [2, 2, 8, 4], stride: 1, pad: 'same' },
  { x: [1, 5, 9, 4], w: [5, 5, 4, 12], stride: 1, pad: 'same' }, // rows of 9: two tiles of 4 and one of 1
  {
    x: [2, 10, 10, 8],
    w: [3, 3, 8, 8],
    stride: [2, 1],
    pad: [
      [0, 0],
      [1, 2],
      [0, 1],
      [0, 0],
    ],
  },
  { x: [2, 9, 9, 3], w: [3, 3, 3, 8], stride: 2, pad: 'same' }, // kw*cin = 9: the reduction loops
  { x: [1, 3, 3, 4], w: [3, 3, 4, 4], stride: 1, pad: 'valid' }, // one output position
  // Conv2DBackpropFilter with cin % 4 == 0: one block function looped over taps and channel groups
  { x: [1, 3, 4, 128], w: [3, 3, 128, 128], stride: 1, pad: 'same' }, // the screening CNN's last block (K = 1152, cout = 128)
  { x: [2, 7, 6, 8], w: [3, 3, 8, 12], stride: [2, 1], pad: 'same' }, // cout 12: blocks of 8 + 4 channels
];

describe.each(convCases)('conv2d x=$x w=$w stride=$stride pad=$pad', ({ x, w, stride, pad }) => {
  it('matches cpu forward and both gradients (Conv2DBackpropInput, Conv2DBackpropFilter)', async () => {
    const xs = randomArray(sizeOf(x), 1);
    const ws = randomArray(sizeOf(w), 2);
    const { err, outputs, reference } = await compareBackends(() => {
      const xt = tf.tensor4d(xs, x);
      const wt = tf.tensor4d(ws, w);
      const y = tf.conv2d(xt, wt, stride, pad);
      const dyWeights = tf.tensor(randomArray(y.size, 3), y.shape);
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf
          .conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)
          .mul(dyWeights)
          .sum(),
      )([xt, wt]);
      return [y, dx as tf.Tensor, dw as tf.Tensor];
    });
    expect(outputs).toBe(3);
    expect(reference[2]?.some((v) => v !== 0)).toBe(true);
    expect(err).toBeLessThan(TOL);
  });
});

describe('Conv2DBackpropFilter / Conv2DBackpropInput kernels called directly', () => {
  it('match cpu on a strided same-padded case', async () => {
    const x = [3, 9, 8, 4] as const;
    const dyShape = [3, 5, 4, 6] as const; // ceil(9/2), ceil(8/2)
    const filterShape: [number, number, number, number] = [3, 3, 4, 6];
    const xs = randomArray(sizeOf(x), 4);
    const dys = randomArray(sizeOf(dyShape), 5);
    const fs = randomArray(sizeOf(filterShape), 6);
    const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined };
    const { err } = await compareBackends(() => [
      tf
        .engine()
        .runKernel<tf.Tensor>(
          'Conv2DBackpropFilter',
          { x: tf.tensor4d(xs, [...x]), dy: tf.tensor4d(dys, [...dyShape]) },
          { ...attrs, filterShape } as unknown as tf.NamedAttrMap,
        ),
      tf
        .engine()
        .runKernel<tf.Tensor>(
          'Conv2DBackpropInput',
          { dy: tf.tensor4d(dys, [...dyShape]), filter: tf.tensor4d(fs, filterShape) },
          { ...attrs, inputShape: [...x] } as unknown as tf.NamedAttrMap,
        ),
    ]);
    expect(err).toBeLessThan(TOL);
  });

  it('Conv2D with dilations (the stock kernel) matches cpu', async () => {
    const xs = randomArray(2 * 9 * 9 * 4, 15);
    const ws = randomArray(3 * 3 * 4 * 8, 16);
    const { err } = await compareBackends(() =>
      tf.conv2d(tf.tensor4d(xs, [2, 9, 9, 4]), tf.tensor4d(ws, [3, 3, 4, 8]), 1, 'same', 'NHWC', 2),
    );
    expect(err).toBeLessThan(TOL);
  });

  it('refuses NCHW in Conv2DBackpropFilter with a clear error', async () => {
    await tf.setBackend('wasm');
    expect(() =>
      tf
        .engine()
        .runKernel(
          'Conv2DBackpropFilter',
          { x: tf.zeros([1, 2, 5, 5]), dy: tf.zeros([1, 2, 3, 3]) },
          { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 2, 2] },
        ),
    ).toThrow(/NHWC/);
  });
});

interface PoolCase {
  x: [number, number, number, number];
  size: number | [number, number];
  stride: number | [number, number];
  pad: 'same' | 'valid';
}

const poolCases: PoolCase[] = [
  { x: [1, 4, 4, 1], size: 2, stride: 2, pad: 'valid' },
  { x: [5, 26, 26, 16], size: 2, stride: 2, pad: 'valid' }, // the peer CNN's first pool
  { x: [3, 11, 11, 32], size: 2, stride: 2, pad: 'valid' }, // odd size: the last row/column is dropped
  { x: [2, 7, 9, 3], size: 2, stride: 2, pad: 'same' },
  { x: [2, 9, 8, 2], size: 3, stride: 2, pad: 'same' }, // overlapping windows
  { x: [1, 6, 7, 3], size: 3, stride: 1, pad: 'valid' },
  { x: [2, 8, 8, 2], size: [2, 3], stride: [1, 2], pad: 'same' },
  // channels % 4 == 0, 2x2 / stride 2: the SIMD kernel
  { x: [1, 6, 6, 4], size: 2, stride: 2, pad: 'valid' },
  { x: [2, 26, 26, 16], size: 2, stride: 2, pad: 'valid' }, // a compiled geometry, another batch size
  { x: [3, 9, 7, 8], size: 2, stride: 2, pad: 'valid' }, // odd height and width
  { x: [2, 10, 10, 12], size: 2, stride: 2, pad: 'same' },
  { x: [2, 8, 7, 4], size: 2, stride: 2, pad: 'same' }, // padded on the right: the JS pass
];

describe.each(poolCases)('maxPool x=$x size=$size stride=$stride pad=$pad', ({ x, size, stride, pad }) => {
  it('matches cpu forward and gradient (MaxPoolGrad) on distinct values', async () => {
    const xs = randomArray(sizeOf(x), 7);
    const { err, reference } = await compareBackends(() => {
      const xt = tf.tensor4d(xs, x);
      const y = tf.maxPool(xt, size, stride, pad);
      const dyWeights = tf.tensor(randomArray(y.size, 8), y.shape);
      const dx = tf.grad((a: tf.Tensor) =>
        tf
          .maxPool(a as tf.Tensor4D, size, stride, pad)
          .mul(dyWeights)
          .sum(),
      )(xt);
      return [y, dx];
    });
    expect(reference[1]?.some((v) => v !== 0)).toBe(true);
    expect(err).toBeLessThan(TOL);
  });

  it('sends the gradient of a tie to the first maximum, as cpu does', async () => {
    const xs = randomArray(sizeOf(x), 9, 0, 3).map(Math.floor); // values 0, 1, 2: many ties
    const { err } = await compareBackends(() => {
      const xt = tf.tensor4d(xs, x);
      return tf.grad((a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, size, stride, pad).sum())(xt);
    });
    expect(err).toBe(0);
  });
});

describe('maxPool (the SIMD kernel, c % 4 == 0) with -Infinity and NaN in the input', () => {
  it.each([[2, 6, 8, 4] as const, [3, 7, 9, 8] as const])(
    'x=%j: NaN never wins, an all -Infinity/NaN window gives -Infinity, as cpu',
    async (...x) => {
      const specials = [-Infinity, NaN, 0, 1, 2];
      const xs = randomArray(sizeOf(x), 17, 0, 5).map((v) => specials[Math.floor(v)] as number);
      const run = (): tf.Tensor => tf.maxPool(tf.tensor4d(xs, [...x]), 2, 2, 'valid');
      const [expected] = await onBackend('cpu', run);
      const [actual] = await onBackend('wasm', run);
      expect(expected?.some((v) => v === -Infinity)).toBe(true);
      expect(Array.from(actual ?? [])).toEqual(Array.from(expected ?? []));
    },
  );
});

describe('maxPool gradient with -Infinity and NaN in the input', () => {
  it.each([[2, 6, 8, 4] as const, [2, 6, 8, 3] as const])(
    'x=%j: no gradient to NaN, none from all -Infinity/NaN windows, as cpu',
    async (...x) => {
      const specials = [-Infinity, NaN, 0, 1];
      const xs = randomArray(sizeOf(x), 13, 0, 4).map((v) => specials[Math.floor(v)] as number);
      const dys = randomArray(sizeOf(x) / 4, 14);
      const { err, reference } = await compareBackends(() => {
        const xt = tf.tensor4d(xs, [...x]);
        const dy = tf.tensor4d(dys, [x[0], x[1] / 2, x[2] / 2, x[3]]);
        return tf
          .engine()
          .runKernel<tf.Tensor>(
            'MaxPoolGrad',
            { dy, input: xt, output: tf.maxPool(xt, 2, 2, 'valid') },
            { filterSize: 2, strides: 2, pad: 'valid' },
          );
      });
      expect(reference[0]?.some((v) => v !== 0)).toBe(true);
      expect(err).toBe(0);
    },
  );
});

describe('SIMD kernels', () => {
  it('are available on this engine (so the cases above exercised them)', async () => {
    await tf.setBackend('wasm');
    expect(simdRuntime(tf.backend())).toBeDefined();
  });

  it('keeps at most MAX_MODULES compiled modules, dropping the least recently used', async () => {
    await tf.setBackend('wasm');
    const rt = simdRuntime(tf.backend());
    if (rt === undefined) throw new Error('no SIMD runtime');
    const builds: string[] = [];
    const get = (key: string) => rt.kernel(`test-lru ${key}`, () => (builds.push(key), new FunctionBuilder([])));
    const kept = get('kept');
    for (let i = 0; i < MAX_MODULES + 10; i++) {
      get(String(i));
      expect(get('kept')).toBe(kept); // used all along: never dropped, never rebuilt
    }
    expect(rt.modules).toBe(MAX_MODULES);
    expect(builds.filter((b) => b === 'kept')).toHaveLength(1);
    builds.length = 0;
    get('0'); // among the oldest: dropped, so built again
    get(String(MAX_MODULES + 9)); // recent: still there
    expect(builds).toEqual(['0']);
  });

  describe('turned off: the JS/XNNPACK paths on the same shapes', () => {
    beforeAll(() => setSimdKernelsEnabled(false));
    afterAll(() => setSimdKernelsEnabled(true));
    it('give no runtime', async () => {
      await tf.setBackend('wasm');
      expect(simdRuntime(tf.backend())).toBeUndefined();
    });
    it.each(convCases.filter((c) => c.w[3] % 4 === 0 || c.w[2] % 4 === 0))(
      'conv2d x=$x w=$w stride=$stride pad=$pad gradients match cpu',
      async ({ x, w, stride, pad }) => {
        const xs = randomArray(sizeOf(x), 1);
        const ws = randomArray(sizeOf(w), 2);
        const { err } = await compareBackends(() => {
          const xt = tf.tensor4d(xs, x);
          const wt = tf.tensor4d(ws, w);
          return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf
              .conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)
              .square()
              .sum(),
          )([xt, wt]);
        });
        expect(err).toBeLessThan(TOL);
      },
    );
    it.each([
      { a: [9, 7], b: [7, 12], ta: false, tb: false },
      { a: [1, 70, 6], b: [1, 20, 70], ta: true, tb: true },
      { a: [7, 9], b: [7, 12], ta: true, tb: false },
      { a: [9, 7], b: [12, 7], ta: false, tb: true },
    ])('matMul a=$a b=$b transposeA=$ta transposeB=$tb matches cpu, with gradients', async ({ a, b, ta, tb }) => {
      const as = randomArray(sizeOf(a), 10);
      const bs = randomArray(sizeOf(b), 11);
      const { err } = await compareBackends(() => {
        const at = tf.tensor(as, a);
        const bt = tf.tensor(bs, b);
        return [
          tf.matMul(at, bt, ta, tb),
          ...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, ta, tb).square().sum())([at, bt]),
        ];
      });
      expect(err).toBeLessThan(TOL);
    });
    it.each(poolCases.filter((c) => c.x[3] % 4 === 0))(
      'maxPool x=$x size=$size stride=$stride pad=$pad gradient matches cpu',
      async ({ x, size, stride, pad }) => {
        const xs = randomArray(sizeOf(x), 9, 0, 3).map(Math.floor);
        const { err } = await compareBackends(() =>
          tf.grad((a: tf.Tensor) =>
            tf
              .maxPool(a as tf.Tensor4D, size, stride, pad)
              .square()
              .sum(),
          )(tf.tensor4d(xs, x)),
        );
        expect(err).toBe(0);
      },
    );
  });
});

describe('matMul with transposed operands (BatchMatMul)', () => {
  const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      cases.push({ a: ta ? [7, 5] : [5, 7], b: tb ? [3, 7] : [7, 3], ta, tb });
      cases.push({ a: ta ? [1, 65, 33] : [1, 33, 65], b: tb ? [1, 17, 65] : [1, 65, 17], ta, tb });
      cases.push({ a: ta ? [3, 6, 4] : [3, 4, 6], b: tb ? [3, 5, 6] : [3, 6, 5], ta, tb }); // batch 3: stock path
      // n % 4 == 0: the SIMD product (m not a multiple of the 4-row tile, column blocks of 8 and 4, short and long k)
      cases.push({ a: ta ? [7, 9] : [9, 7], b: tb ? [12, 7] : [7, 12], ta, tb });
      cases.push({ a: ta ? [1, 70, 6] : [1, 6, 70], b: tb ? [1, 20, 70] : [1, 70, 20], ta, tb });
      cases.push({ a: ta ? [3, 1] : [1, 3], b: tb ? [4, 3] : [3, 4], ta, tb });
    }
  }
  const peerCases = [
    { a: [64, 800], b: [800, 64], ta: false, tb: false }, // the peer CNN's dense layers: forward,
    { a: [64, 800], b: [64, 64], ta: true, tb: false }, // weight gradient,
    { a: [64, 64], b: [800, 64], ta: false, tb: true }, // input gradient,
    { a: [64, 10], b: [64, 10], ta: false, tb: true }, // and the output layer's
  ];
  it.each(peerCases)(
    'a=$a b=$b transposeA=$ta transposeB=$tb (peer CNN) matches cpu, SIMD on and off',
    async ({ a, b, ta, tb }) => {
      const as = randomArray(sizeOf(a), 10);
      const bs = randomArray(sizeOf(b), 11);
      for (const on of [true, false]) {
        setSimdKernelsEnabled(on);
        try {
          const { err } = await compareBackends(() => tf.matMul(tf.tensor(as, a), tf.tensor(bs, b), ta, tb));
          expect(err).toBeLessThan(TOL);
        } finally {
          setSimdKernelsEnabled(true);
        }
      }
    },
  );
  it.each(cases)('a=$a b=$b transposeA=$ta transposeB=$tb matches cpu, with gradients', async ({ a, b, ta, tb }) => {
    const as = randomArray(sizeOf(a), 10);
    const bs = randomArray(sizeOf(b), 11);
    let shape: number[] = [];
    const { err } = await compareBackends(() => {
      const at = tf.tensor(as, a);
      const bt = tf.tensor(bs, b);
      const y = tf.matMul(at, bt, ta, tb);
      shape = y.shape;
      const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, ta, tb).square().sum())([at, bt]);
      return [y, da as tf.Tensor, db as tf.Tensor];
    });
    expect(shape.length).toBe(a.length);
    expect(err).toBeLessThan(TOL);
  });
});

describe('the peer CNN', () => {
  it('gets the same loss and variable gradients on wasm (project kernels) as on cpu', async () => {
    const batch = 6;
    const init = {
      w1: randomArray(3 * 3 * 1 * 16, 20, -0.5, 0.5),
      b1: randomArray(16, 21, -0.1, 0.1),
      w2: randomArray(3 * 3 * 16 * 32, 22, -0.15, 0.15),
      b2: randomArray(32, 23, -0.1, 0.1),
      w3: randomArray(800 * 64, 24, -0.05, 0.05),
      b3: randomArray(64, 25, -0.1, 0.1),
      w4: randomArray(64 * 10, 26, -0.2, 0.2),
      b4: randomArray(10, 27, -0.1, 0.1),
    };
    const xs = randomArray(batch * 28 * 28, 28, 0, 1);
    const labels = Array.from({ length: batch }, (_, i) => i % 10);
    const run = (): tf.Tensor[] => {
      const v = {
        w1: tf.variable(tf.tensor4d(init.w1, [3, 3, 1, 16])),
        b1: tf.variable(tf.tensor1d(init.b1)),
        w2: tf.variable(tf.tensor4d(init.w2, [3, 3, 16, 32])),
        b2: tf.variable(tf.tensor1d(init.b2)),
        w3: tf.variable(tf.tensor2d(init.w3, [800, 64])),
        b3: tf.variable(tf.tensor1d(init.b3)),
        w4: tf.variable(tf.tensor2d(init.w4, [64, 10])),
        b4: tf.variable(tf.tensor1d(init.b4)),
      };
      const x = tf.tensor4d(xs, [batch, 28, 28, 1]);
      const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
      const { value, grads } = tf.variableGrads(() => {
        const block = (input: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D): tf.Tensor4D =>
          tf.maxPool(tf.relu(tf.conv2d(input, w, 1, 'valid').add(b)) as tf.Tensor4D, 2, 2, 'valid');
        const h = block(block(x, v.w1, v.b1), v.w2, v.b2);
        const d = tf.relu(tf.matMul(h.reshape([batch, 800]), v.w3).add(v.b3));
        return tf.losses.softmaxCrossEntropy<tf.Tensor, tf.Scalar>(y, tf.matMul(d, v.w4).add(v.b4));
      });
      const out = [value, ...Object.values(v).map((t) => grads[t.name] as tf.Tensor)];
      Object.values(v).forEach((t) => t.dispose());
      return out;
    };
    const reference = await onBackend('cpu', run);
    const actual = await onBackend('wasm', run);
    expect(actual).toHaveLength(9);
    reference.forEach((r, i) => {
      expect(relError(actual[i] as Float32Array, r)).toBeLessThan(TOL);
    });
  });
});

describe('sum over every axis but the last (Sum, bias gradients)', () => {
  const cases: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
    { shape: [5, 26, 26, 16], axis: [0, 1, 2], keepDims: false },
    { shape: [3, 11, 11, 32], axis: [2, 0, 1], keepDims: true },
    { shape: [300, 7], axis: 0, keepDims: false },
    { shape: [300, 7], axis: -2, keepDims: true },
    { shape: [4, 9, 9, 5], axis: [1, 2], keepDims: false }, // not the outer axes: stock kernel
    { shape: [4, 3], axis: 0, keepDims: false }, // small: the JS pass
    { shape: [2, 3, 3, 8], axis: [0, 1, 2], keepDims: false }, // rank 4 with few rows: the JS pass
    { shape: [64, 10], axis: 1, keepDims: true }, // the last axis alone (the loss's per-example sums)
    { shape: [64, 10], axis: [-1], keepDims: false },
    { shape: [3, 5, 7], axis: 2, keepDims: false },
    { shape: [3, 5, 7], axis: [0, 2], keepDims: false }, // neither: stock kernel
    { shape: [6, 7], axis: [0, 1], keepDims: false }, // all axes: stock kernel
    { shape: [6], axis: 0, keepDims: false }, // rank 1: stock kernel
  ];
  it.each(cases)('shape=$shape axis=$axis keepDims=$keepDims matches cpu', async ({ shape, axis, keepDims }) => {
    const xs = randomArray(sizeOf(shape), 12);
    let outShape: number[] = [];
    const { err } = await compareBackends(() => {
      const y = tf.sum(tf.tensor(xs, shape), axis, keepDims);
      outShape = y.shape;
      return y;
    });
    const expected = tf.tidy(() => tf.sum(tf.zeros(shape), axis, keepDims).shape);
    expect(outShape).toEqual(expected);
    expect(err).toBeLessThan(TOL);
  });
});

describe('Identity and same-dtype Cast share the input data', () => {
  it('clone and cast match cpu, outlive their input, and free the data with the last reference', async () => {
    await tf.setBackend('wasm');
    const xs = randomArray(3 * 5 * 4, 17);
    const before = tf.memory().numBytes;
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const ids = backend.numDataIds();
    const x = tf.tensor3d(xs, [3, 5, 4]);
    const c = tf.clone(x);
    const f = tf.cast(x, 'float32');
    expect(backend.numDataIds()).toBe(ids + 1); // no copies
    x.dispose();
    expect(Array.from(await c.data())).toEqual(Array.from(xs));
    c.dispose();
    expect(Array.from(await f.data())).toEqual(Array.from(xs));
    f.dispose();
    expect(backend.numDataIds()).toBe(ids);
    expect(tf.memory().numBytes).toBe(before);
  });

  it('int32 <-> float32 casts (the stock kernel) match cpu', async () => {
    const xs = randomArray(24, 18, -3, 3);
    const { err } = await compareBackends(() => {
      const x = tf.tensor2d(xs, [4, 6]);
      return [tf.cast(x, 'int32').cast('float32'), tf.cast(tf.cast(x, 'int32'), 'int32').toFloat()];
    });
    expect(err).toBe(0);
  });

  it('a variable assigned from its own clone keeps both values', async () => {
    await tf.setBackend('wasm');
    const v = tf.variable(tf.tensor1d([1, 2, 3]));
    const kept = tf.clone(v);
    v.assign(tf.tensor1d([4, 5, 6]));
    expect(Array.from(await kept.data())).toEqual([1, 2, 3]);
    expect(Array.from(await v.data())).toEqual([4, 5, 6]);
    tf.dispose([v, kept]);
  });
});

describe('Add with a bias operand', () => {
  const cases: { a: number[]; b: number[] }[] = [
    { a: [5, 26, 26, 16], b: [16] }, // the peer CNN's first conv bias: the SIMD loop
    { a: [32], b: [3, 11, 11, 32] }, // bias first
    { a: [70, 64], b: [1, 64] }, // a dense bias as [1, c]
    { a: [9, 7, 256], b: [1, 1, 256] }, // the widest unrolled row
    { a: [9, 7, 260], b: [260] }, // wider: stock kernel
    { a: [40, 30], b: [30] }, // c % 4 != 0: stock kernel
    { a: [3, 4], b: [4] }, // small: stock kernel
    { a: [8, 16, 16], b: [8, 16, 16] }, // same shapes: stock kernel
    { a: [8, 16, 16], b: [16, 1] }, // broadcast over another axis: stock kernel
  ];
  it.each(cases)('a=$a + b=$b matches cpu, with gradients', async ({ a, b }) => {
    const as = randomArray(sizeOf(a), 19);
    const bs = randomArray(sizeOf(b), 20);
    let shape: number[] = [];
    const { err } = await compareBackends(() => {
      const at = tf.tensor(as, a);
      const bt = tf.tensor(bs, b);
      const y = tf.add(at, bt);
      shape = y.shape;
      const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.add(p, q).square().sum())([at, bt]);
      return [y, da as tf.Tensor, db as tf.Tensor];
    });
    expect(shape).toEqual(tf.tidy(() => tf.add(tf.zeros(a), tf.zeros(b)).shape));
    expect(err).toBeLessThan(TOL);
  });

  it('int32 operands use the stock kernel', async () => {
    const { err } = await compareBackends(() =>
      tf.add(tf.range(0, 2048, 1, 'int32').reshape([512, 4]), tf.tensor1d([1, 2, 3, 4], 'int32')).toFloat(),
    );
    expect(err).toBe(0);
  });
});

describe('the Relu gradient (TriageReluGrad on wasm)', () => {
  it.each([[5, 26, 26, 16], [3, 7], [2, 5, 3], [1]])(
    'x=%j: matches cpu, with 0, -0, NaN and infinities in x and dy',
    async (...shape) => {
      const size = sizeOf(shape);
      const specials = [0, -0, NaN, Infinity, -Infinity];
      const xs = randomArray(size, 21).map((v, i) => (i % 7 === 3 ? (specials[i % 5] as number) : v));
      const dys = randomArray(size, 22).map((v, i) => (i % 11 === 5 ? (specials[(i + 2) % 5] as number) : v));
      const f = (): tf.Tensor => {
        const x = tf.tensor(xs, shape);
        const dy = tf.tensor(dys, shape);
        return tf.grad((a: tf.Tensor) => tf.relu(a).mul(dy).sum())(x);
      };
      const [reference] = await onBackend('cpu', f);
      const [actual] = await onBackend('wasm', f);
      // Bit for bit (toEqual tells -0 from 0 and takes NaN as equal to NaN).
      expect(Array.from(actual as Float32Array)).toEqual(Array.from(reference as Float32Array));
    },
  );

  it('runs as one kernel on wasm instead of Step, Cast and Multiply', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor(randomArray(64, 23), [8, 8]);
    const prof = await tf.profile(() => tf.grad((a: tf.Tensor) => tf.relu(a).sum())(x));
    expect(prof.kernelNames).toContain('TriageReluGrad');
    expect(prof.kernelNames).not.toContain('Step');
    x.dispose();
  });

  it('has a second derivative as tfjs does (cpu)', async () => {
    const xs = randomArray(30, 24);
    const { err } = await compareBackends(() => {
      const x = tf.tensor(xs, [5, 6]);
      const g = (a: tf.Tensor): tf.Tensor => tf.grad((b: tf.Tensor) => tf.relu(b).square().sum())(a);
      return [g(x), tf.grad((a: tf.Tensor) => g(a).mul(tf.relu(a)).sum())(x)];
    });
    expect(err).toBeLessThan(TOL);
  });

  it('is tfjs gradient again once the project kernels are unregistered', async () => {
    unregisterWasmTrainingKernels();
    try {
      await tf.setBackend('wasm');
      const x = tf.tensor(randomArray(64, 25), [8, 8]);
      const prof = await tf.profile(() => tf.grad((a: tf.Tensor) => tf.relu(a).sum())(x));
      expect(prof.kernelNames).toContain('Step');
      x.dispose();
    } finally {
      registerWasmTrainingKernels();
    }
  });
});
