/**
 * The project's wasm training kernels: registering them makes the tfjs wasm backend able to train
 * conv nets (Conv2DBackpropFilter is otherwise missing) and several times faster at it.
 *
 * What each kernel replaces and when it falls back to the stock one: the table in README.md.
 *
 * CPU time per peer CNN training step (batch 64), JS/XNNPACK paths -> SIMD kernels, measured A/B
 * in one process: Conv2DBackpropFilter 7.2 -> 1.8 ms (two calls), MaxPoolGrad 3.2 -> 0.6 ms (two
 * calls); the whole step 21.9 -> 13.9 ms. Then from 809efc1 to the SIMD Conv2D, Conv2DBackpropInput
 * and BatchMatMul, the shared Identity/Cast, the bias Add, TriageReluGrad, the JS Sums and
 * optimizer.ts's SIMD Adam (9 alternating rounds in one process): Conv2D 2.57 -> 1.70 ms (two calls),
 * Conv2DBackpropInput 2.62 -> 1.36, BatchMatMul 0.99 -> 0.53 (five), Add 0.82 -> 0.24 (five),
 * Identity 0.52 -> 0.13 (44: tfjs's engine clones every tensor it saves for the gradients), Step +
 * Multiply 0.54 -> TriageReluGrad 0.29 + Multiply 0.07, Adam 0.59 -> 0.14; the whole step 13.6 ->
 * 9.1 ms. Left: Conv2DBackpropFilter 1.9, MaxPoolGrad 0.6, MaxPool 0.4, Sum 0.25, and 0.6 ms per
 * step outside the profiled kernel times (tfjs engine, tape, layers).
 * Inference (registry/modelCache.ts scoring the 'cnn' model, 28x28x1): CPU ms per image, the
 * stock FusedConv2D with model.predict + tf temperature scaling (before) against the SIMD
 * FusedConv2D with the Sequential's layers called directly + JS temperature scaling, 9
 * alternating rounds in one process (medians; probabilities equal to 4e-8):
 *
 * | batch | before | after | change |
 * |-------|--------|-------|--------|
 * | 1     | 0.669  | 0.465 | -30%   |
 * | 2     | 0.538  | 0.392 | -27%   |
 * | 4     | 0.458  | 0.345 | -25%   |
 * | 8     | 0.430  | 0.327 | -24%   |
 * | 64    | 0.417  | 0.314 | -25%   |
 *
 * Winograd against the SIMD direct FusedConv2D, the screening CNN's layers at batch 64, ms per
 * image (the repository's `npm run bench:winograd`, 6 alternating calls in one
 * process, 2026-12-02, load average 0.6): 64x64x16->32 1.16 -> 0.52, 32x32x32->64 1.15 -> 0.40,
 * 16x16x64->128 1.15 -> 0.36, 8x8x128->128 0.57 -> 0.18 (2.2-3.2x). Difference 3e-6 to 5e-6 of
 * the largest output; tests bound it at 1e-5 to 3e-5 against the cpu backend's direct convolution
 * (which is within ~1e-7). Chunks of 16 and 64 tiles were within 15% of 32, none better on every
 * layer (measured under load). The 36 slabs of a chunk's scratch are a cache line more than a
 * power of two apart: at exactly 2 or 4 KB the transforms' 36 accesses per tile shared L1 sets,
 * and the whole convolution was slower than the direct one.
 *
 * The SIMD kernels (simdKernels.ts) are small wasm modules generated per tensor geometry that
 * share the backend's memory; without wasm SIMD the JS/XNNPACK paths run instead.
 *
 * Registration is global to tfjs (its kernel registry is), idempotent, and reversible.
 */
import * as tf from '@tensorflow/tfjs';
import { batchMatMulConfig } from './batchMatMul';
import { biasAddConfig } from './biasAdd';
import { conv2dConfig } from './conv2d';
import { fusedConv2dConfig } from './fusedConv2d';
import { castConfig, identityConfig } from './identity';
import { conv2dBackpropFilterConfig } from './conv2dBackpropFilter';
import { conv2dBackpropInputConfig } from './conv2dBackpropInput';
import { maxPoolConfig } from './maxPool';
import { maxPoolGradConfig } from './maxPoolGrad';
import { overrideReluGradient, reluGradKernelConfig, restoreReluGradient } from './reluGrad';
import { sumConfig } from './sum';
import { batchNormTrainConfig, batchNormTrainGradConfig, fusedBatchNormConfig } from './batchNorm';
import { winogradConv2dConfig } from './winograd';

export { makeConv2dWasm } from './conv2d';
export { makeFusedConv2dWasm } from './fusedConv2d';
export { conv2dBackpropFilterWasm } from './conv2dBackpropFilter';
export { flipTransposeFilter, makeConv2dBackpropInputWasm } from './conv2dBackpropInput';
export { maxPoolGradWasm } from './maxPoolGrad';
export { makeBatchMatMulWasm } from './batchMatMul';
export { makeCastWasm, makeIdentityWasm } from './identity';
export { makeBiasAddWasm } from './biasAdd';
export { RELU_GRAD_KERNEL } from './reluGrad';
export { makeSumWasm } from './sum';
export { BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL, batchNormTraining, batchNormKernelsActive } from './batchNorm';
export { WINOGRAD_KERNEL, winogradFilter, winogradFits } from './winograd';

export const PROJECT_WASM_KERNELS = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'MaxPoolGrad',
  'BatchMatMul',
  'Sum',
  'Identity',
  'Cast',
  'Add',
  'TriageReluGrad',
  'TriageBatchNormTrain',
  'TriageBatchNormTrainGrad',
  'FusedBatchNorm',
  'MaxPool',
  'TriageWinogradConv2D',
] as const;
export type ProjectWasmKernel = (typeof PROJECT_WASM_KERNELS)[number];

/** Marks a kernel function as ours and remembers what it replaced. */
interface ProjectKernelFunc extends tf.KernelFunc {
  triageProjectKernel?: true;
  triageReplaced?: tf.KernelConfig;
}

function isProjectKernel(name: string): boolean {
  const k = tf.getKernel(name, 'wasm');
  return k != null && (k.kernelFunc as ProjectKernelFunc).triageProjectKernel === true;
}

function stock(name: string): tf.KernelConfig | undefined {
  return tf.getKernel(name, 'wasm');
}

function install(config: tf.KernelConfig, replaced: tf.KernelConfig | undefined): void {
  const fn = config.kernelFunc as ProjectKernelFunc;
  fn.triageProjectKernel = true;
  if (replaced != null) {
    fn.triageReplaced = replaced;
    tf.unregisterKernel(config.kernelName, 'wasm');
  }
  // The stock kernel's setup (binding its wasm export) runs when the backend initialises; keep it,
  // since the project kernel may call the stock one.
  tf.registerKernel({ ...config, setupFunc: replaced?.setupFunc, disposeFunc: replaced?.disposeFunc });
}

/**
 * Registers the project kernels for the wasm backend (replacing the stock ones) and returns the
 * names of the kernels now in place. Safe to call more than once; call it before or after
 * `tf.setBackend('wasm')`.
 */
export function registerWasmTrainingKernels(
  only: readonly ProjectWasmKernel[] = PROJECT_WASM_KERNELS,
): ProjectWasmKernel[] {
  const done: ProjectWasmKernel[] = [];
  for (const name of only) {
    if (!isProjectKernel(name)) {
      const replaced = stock(name);
      switch (name) {
        case 'Conv2DBackpropFilter':
          install(conv2dBackpropFilterConfig, replaced);
          break;
        case 'Conv2DBackpropInput':
          install(conv2dBackpropInputConfig(replaced?.kernelFunc), replaced);
          break;
        case 'MaxPoolGrad':
          install(maxPoolGradConfig, replaced);
          break;
        case 'TriageReluGrad':
          install(reluGradKernelConfig, replaced);
          overrideReluGradient();
          break;
        case 'TriageBatchNormTrain':
          install(batchNormTrainConfig, replaced);
          break;
        case 'TriageBatchNormTrainGrad':
          install(batchNormTrainGradConfig, replaced);
          break;
        case 'TriageWinogradConv2D':
          install(winogradConv2dConfig, replaced);
          break;
        case 'Conv2D':
        case 'FusedConv2D':
          if (replaced == null) throw new Error(`the wasm backend has no ${name} kernel to build on`);
          install(
            name === 'Conv2D' ? conv2dConfig(replaced.kernelFunc) : fusedConv2dConfig(replaced.kernelFunc),
            replaced,
          );
          break;
        case 'FusedBatchNorm':
        case 'MaxPool':
          if (replaced == null) throw new Error(`the wasm backend has no ${name} kernel to build on`);
          install(
            name === 'MaxPool' ? maxPoolConfig(replaced.kernelFunc) : fusedBatchNormConfig(replaced.kernelFunc),
            replaced,
          );
          break;
        case 'Identity':
        case 'Cast':
        case 'Add':
          if (replaced == null) throw new Error(`the wasm backend has no ${name} kernel to build on`);
          install(
            name === 'Identity'
              ? identityConfig(replaced.kernelFunc)
              : name === 'Cast'
                ? castConfig(replaced.kernelFunc)
                : biasAddConfig(replaced.kernelFunc),
            replaced,
          );
          break;
        case 'BatchMatMul':
        case 'Sum': {
          if (replaced == null) throw new Error(`the wasm backend has no ${name} kernel to build on`);
          install(name === 'Sum' ? sumConfig(replaced.kernelFunc) : batchMatMulConfig(replaced.kernelFunc), replaced);
          break;
        }
      }
    }
    done.push(name);
  }
  return done;
}

/** Puts the stock wasm kernels back (used by tests and benches to compare against them). */
export function unregisterWasmTrainingKernels(): void {
  for (const name of PROJECT_WASM_KERNELS) {
    const k = tf.getKernel(name, 'wasm');
    if (k == null) continue;
    const fn = k.kernelFunc as ProjectKernelFunc;
    if (fn.triageProjectKernel !== true) continue;
    tf.unregisterKernel(name, 'wasm');
    if (fn.triageReplaced != null) tf.registerKernel(fn.triageReplaced);
    if (name === 'TriageReluGrad') restoreReluGradient();
  }
}

/** Names of the project kernels currently registered for wasm. */
export function registeredWasmTrainingKernels(): ProjectWasmKernel[] {
  return PROJECT_WASM_KERNELS.filter((n) => isProjectKernel(n));
}

// Building blocks for kernels and optimizers written outside this package (a SIMD Adam update, the
// threaded wasm build), and the switch that turns the generated SIMD paths off (A/B measurements).
export { buildAdamUpdate, setSimdKernelsEnabled, simdRuntime, type SimdRuntime } from './simdKernels';
export { asWasm, f32, heapOffset, input, type KernelArgs, type WasmBackendLike } from './wasmUtil';
export { registerThreadedWasmBackend } from './wasmThreads';
