/**
 * The threaded SIMD wasm build in Node (wasmThreads.ts): it loads with the number of XNNPACK
 * threads asked for, computes what cpu computes with the kernels registered, refuses a thread count
 * out of range or a backend already initialised, and does not keep the process alive (jest would
 * report an open handle / not exit otherwise).
 */
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { registerThreadedWasmBackend, registerWasmTrainingKernels } from '../src';
import { compareBackends, randomArray, sizeOf } from './compare';

describe('registerThreadedWasmBackend', () => {
  it('refuses a thread count out of range', () => {
    for (const n of [0, 1, 9, 2.5]) expect(() => registerThreadedWasmBackend(n)).toThrow(/from 2 to 8/);
  });

  it('runs XNNPACK on 2 threads and matches cpu on a conv net step', async () => {
    registerThreadedWasmBackend(2);
    registerWasmTrainingKernels();
    expect(await tf.setBackend('wasm')).toBe(true);
    expect(getThreadsCount()).toBe(2);
    const x: [number, number, number, number] = [8, 13, 13, 16];
    const w: [number, number, number, number] = [3, 3, 16, 32];
    const xs = randomArray(sizeOf(x), 1);
    const ws = randomArray(sizeOf(w), 2);
    const { err } = await compareBackends(() => {
      const xt = tf.tensor4d(xs, x);
      const wt = tf.tensor4d(ws, w);
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf
          .relu(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'))
          .square()
          .sum(),
      )([xt, wt]);
      return [
        tf.conv2d(xt, wt, 1, 'same'),
        dx as tf.Tensor,
        dw as tf.Tensor,
        tf.matMul(xt.reshape([-1, 16]), wt.reshape([144, 32]).slice([0, 0], [16, 32])),
      ];
    });
    expect(err).toBeLessThan(1e-4);
  });

  it('refuses once the wasm backend is initialised', () => {
    expect(() => registerThreadedWasmBackend(2)).toThrow(/already initialised/);
  });
});
