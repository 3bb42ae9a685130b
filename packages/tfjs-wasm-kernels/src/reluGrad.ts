/**
 * The Relu gradient in one wasm kernel. tfjs computes it as mul(dy, cast(step(x), 'float32')):
 * three kernel calls (Step, Cast, Multiply) and two full-size temporaries per relu layer, 0.4 ms
 * CPU per peer CNN training step. While the project kernels are registered, the Relu gradient runs
 * the kernel TriageReluGrad instead when the backend is wasm and both tensors are float32 (a
 * generated SIMD loop, simdKernels.ts buildReluGrad, with a JS tail); on other backends and dtypes
 * it is tfjs's own gradient. tfjs's gradient registry is global, so the override checks the
 * backend on every call; unregistering puts tfjs's gradient config back.
 *
 * TriageReluGrad has a gradient too (as mul/step have: the dy part again through the relu mask,
 * zero for x), so higher-order gradients still work.
 */
import * as tf from '@tensorflow/tfjs';
import { buildReluGrad, simdRuntime } from './simdKernels';
import { KernelArgs, asWasm, f32, heapOffset, input } from './wasmUtil';

export const RELU_GRAD_KERNEL = 'TriageReluGrad';

/** dx[i] = dy[i] * (x > 0 ? 1 : x is NaN ? NaN : 0), in float32, from index `from` on. */
export function reluGradJs(dy: Float32Array, x: Float32Array, dx: Float32Array, from = 0): void {
  for (let i = from; i < dx.length; i++) {
    const xi = x[i] as number;
    dx[i] = (dy[i] as number) * (xi > 0 ? 1 : xi !== xi ? NaN : 0);
  }
}

function reluGradWasm(args: KernelArgs): tf.TensorInfo {
  const backend = asWasm(args.backend);
  const dy = input(args.inputs, 'dy', RELU_GRAD_KERNEL);
  const x = input(args.inputs, 'x', RELU_GRAD_KERNEL);
  const out = backend.makeOutput([...x.shape], 'float32');
  const size = tf.util.sizeFromShape(x.shape);
  const simd = simdRuntime(args.backend);
  const done = simd !== undefined ? size - (size % 4) : 0;
  if (simd !== undefined && done > 0)
    simd.kernel('ReluGrad', () => buildReluGrad())(
      heapOffset(backend, dy),
      heapOffset(backend, x),
      heapOffset(backend, out),
      done * 4,
    );
  if (done < size) reluGradJs(f32(backend, dy), f32(backend, x), f32(backend, out), done);
  return out;
}

export const reluGradKernelConfig: tf.KernelConfig = {
  kernelName: RELU_GRAD_KERNEL,
  backendName: 'wasm',
  kernelFunc: reluGradWasm,
};

function useKernel(dy: tf.Tensor, x: tf.Tensor): boolean {
  return (
    dy.dtype === 'float32' &&
    x.dtype === 'float32' &&
    tf.getBackend() === 'wasm' &&
    tf.getKernel(RELU_GRAD_KERNEL, 'wasm') != null &&
    tf.util.arraysEqual(dy.shape, x.shape)
  );
}

function reluGrad(dy: tf.Tensor, x: tf.Tensor, tfjs: tf.GradConfig): tf.Tensor {
  if (useKernel(dy, x)) return tf.engine().runKernel<tf.Tensor>(RELU_GRAD_KERNEL, { dy, x });
  const grads = tfjs.gradFunc(dy, [x], {});
  return (grads.x as () => tf.Tensor)();
}

let tfjsReluGrad: tf.GradConfig | undefined;

/** Routes the Relu gradient through TriageReluGrad on wasm (idempotent). */
export function overrideReluGradient(): void {
  if (tfjsReluGrad !== undefined) return;
  const tfjs = tf.getGradient('Relu');
  tfjsReluGrad = tfjs;
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => reluGrad(dy as tf.Tensor, x, tfjs) };
    },
  });
  tf.registerGradient({
    kernelName: RELU_GRAD_KERNEL,
    inputsToSave: ['x'],
    gradFunc: (ddx, saved) => {
      const [x] = saved as [tf.Tensor];
      return { dy: () => reluGrad(ddx as tf.Tensor, x, tfjs), x: () => tf.zerosLike(x) };
    },
  });
}

/** Puts tfjs's Relu gradient back. */
export function restoreReluGradient(): void {
  if (tfjsReluGrad === undefined) return;
  tf.registerGradient(tfjsReluGrad);
  tfjsReluGrad = undefined;
}
