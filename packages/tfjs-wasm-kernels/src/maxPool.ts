/**
 * MaxPool for the wasm backend: the 2x2 / stride 2 windows of a conv net's pooling layers,
 * unpadded, channels a multiple of 4 (NHWC, float32), as a generated SIMD loop (simdKernels.ts
 * buildMaxPool2x2) with the cpu backend's NaN rule, the one MaxPoolGrad follows; every other case
 * goes to the stock (XNNPACK) kernel, which also lets NaN win where cpu does not. CPU ms per call
 * on the screening CNN's pools at batch 32, stock against this (7 alternating rounds in one
 * process, medians): 6.4 -> 3.7 (x [32,128,128,16]), 2.6 -> 1.8, 0.8 -> 0.5, 0.4 -> 0.2, 0.1 -> 0.1.
 */
import * as tf from '@tensorflow/tfjs';
import { buildMaxPool2x2, simdRuntime } from './simdKernels';
import { KernelArgs, asWasm, heapOffset, input, pool2dInfo } from './wasmUtil';

export function makeMaxPoolWasm(original: tf.KernelFunc) {
  return function maxPoolWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'MaxPool');
    const attrs = args.attrs ?? {};
    const stock = (): tf.TensorInfo => original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    if (x.dtype !== 'float32' || x.shape.length !== 4 || (x.shape[3] as number) % 4 !== 0) return stock();
    const info = pool2dInfo(x, attrs, 'MaxPool x');
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
    const plain =
      info.effectiveFilterHeight === 2 &&
      info.effectiveFilterWidth === 2 &&
      info.strideHeight === 2 &&
      info.strideWidth === 2;
    const simd =
      plain && info.padInfo.top === 0 && info.padInfo.left === 0 && 2 * oh <= h && 2 * ow <= w
        ? simdRuntime(args.backend)
        : undefined;
    if (simd === undefined) return stock();
    const backend = asWasm(args.backend);
    const out = backend.makeOutput([n, oh, ow, c], 'float32');
    const g = { h, w, c, oh, ow };
    const run = simd.kernel(`MaxPool2x2 ${JSON.stringify(g)}`, () => buildMaxPool2x2(g));
    if (n > 0 && oh > 0 && ow > 0) run(heapOffset(backend, x), heapOffset(backend, out), n);
    return out;
  };
}

export function maxPoolConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'MaxPool', backendName: 'wasm', kernelFunc: makeMaxPoolWasm(original) };
}
