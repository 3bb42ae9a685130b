import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { FusedAdam, ADAM_UPDATE_KERNEL } from '../../../src/ml/optimizer';
import { setSimdKernelsEnabled, simdRuntime } from '@image-triage/tfjs-wasm-kernels';
import { randomArray, relError } from '../../../packages/tfjs-wasm-kernels/test/compare';
import { quietTfjsNotes } from '../../../src/ml/backend';

/**
 * Trains the same tiny model (a dense layer and a bias under a non-linear loss) for a few steps
 * with an optimizer and returns the final variables, the optimizer's state and the kernels run.
 */
async function run(
  backend: 'cpu' | 'wasm',
  make: (lr: number) => tf.Optimizer,
): Promise<{ vars: Float32Array[]; state: Float32Array[]; kernels: string[] }> {
  quietTfjsNotes();
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  const w = tf.variable(tf.tensor2d(randomArray(12 * 5, 1), [12, 5]));
  const b = tf.variable(tf.tensor1d(randomArray(5, 2)));
  const x = tf.tensor2d(randomArray(16 * 12, 3), [16, 12]);
  const y = tf.tensor2d(randomArray(16 * 5, 4), [16, 5]);
  const opt = make(0.05);
  const kernels = new Set<string>();
  for (let step = 0; step < 6; step++) {
    if (step === 3) (opt as unknown as { learningRate: number }).learningRate = 0.01; // as train() decays it
    const prof = await tf.profile(() => {
      opt.minimize(() => tf.mean<tf.Scalar>(tf.square(tf.sub(tf.tanh(tf.add(tf.matMul(x, w), b)), y))), false, [w, b]);
    });
    prof.kernelNames.forEach((k) => kernels.add(k));
  }
  const vars = [Float32Array.from(await w.data()), Float32Array.from(await b.data())];
  const state = await Promise.all(
    (await opt.getWeights()).map(async (nt) => Float32Array.from(await nt.tensor.data())),
  );
  tf.dispose([w, b, x, y]);
  opt.dispose();
  return { vars, state, kernels: [...kernels] };
}

describe('FusedAdam', () => {
  it('on wasm, gives the variables and moments of tfjs Adam bit for bit, with one fused kernel per variable', async () => {
    const ref = await run('wasm', (lr) => tf.train.adam(lr));
    const fused = await run('wasm', (lr) => new FusedAdam(lr));
    expect(fused.kernels).toContain(ADAM_UPDATE_KERNEL);
    expect(fused.kernels).not.toContain('Sqrt');
    expect(ref.kernels).toContain('Sqrt');
    expect(fused.vars).toHaveLength(2);
    fused.vars.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(ref.vars[i] as Float32Array)));
    expect(fused.state).toHaveLength(ref.state.length);
    fused.state.forEach((s, i) => expect(Array.from(s)).toEqual(Array.from(ref.state[i] as Float32Array)));
    // The variables moved: the comparison is not between two untouched copies.
    const start = randomArray(12 * 5, 1);
    expect(relError(fused.vars[0] as Float32Array, start)).toBeGreaterThan(1e-2);
  });

  it('gives the same bits with its SIMD loop (4 floats at a time, the rest in JS) and with the JS loop alone', async () => {
    await tf.setBackend('wasm');
    expect(simdRuntime(tf.backend())).toBeDefined(); // so the test above ran the SIMD loop (w: 60 floats, b: 4 + 1)
    const ref = await run('wasm', (lr) => tf.train.adam(lr));
    setSimdKernelsEnabled(false);
    try {
      const js = await run('wasm', (lr) => new FusedAdam(lr));
      js.vars.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(ref.vars[i] as Float32Array)));
      js.state.forEach((s, i) => expect(Array.from(s)).toEqual(Array.from(ref.state[i] as Float32Array)));
    } finally {
      setSimdKernelsEnabled(true);
    }
  });

  it('is plain tfjs Adam on other backends', async () => {
    const ref = await run('cpu', (lr) => tf.train.adam(lr));
    const fused = await run('cpu', (lr) => new FusedAdam(lr));
    expect(fused.kernels).not.toContain(ADAM_UPDATE_KERNEL);
    fused.vars.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(ref.vars[i] as Float32Array)));
  });

  it('serializes as Adam, so saved training configs stay standard', () => {
    const opt = new FusedAdam(1e-3);
    expect(opt.getClassName()).toBe('Adam');
    expect(opt.getConfig()).toMatchObject({ learningRate: 1e-3, beta1: 0.9, beta2: 0.999 });
    opt.dispose();
  });
});
