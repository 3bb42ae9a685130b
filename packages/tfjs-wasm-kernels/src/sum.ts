/**
 * Sum for the wasm backend, for the reduction of every axis but the last (a bias gradient: dy
 * [batch, h, w, c] -> [c]) or of the last axis alone (the loss's per-example sums: [batch, classes]
 * -> [batch]). The stock kernel transposes the tensor first and then reduces (0.8 ms for the peer
 * CNN's first conv, every step; 0.04-0.16 ms even for a [64, 10] tensor, in call overhead). Here:
 *  - every axis but the last, rank 4 with at least 256 rows: the backend's (XNNPACK) AvgPool over
 *    the whole h x w window gives [batch, 1, 1, c] means in 0.1 ms; a JS pass adds them up (times
 *    h*w) in float64;
 *  - every axis but the last otherwise, and the last axis alone: one sequential JS pass over the
 *    heap, accumulating in float64 (as tfjs's cpu backend does).
 * (A ones x dy product on XNNPACK is no faster: XNNPACK repacks dy on every call.)
 * Every other reduction goes to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, dispose, f32, input, runKernel } from './wasmUtil';

export function makeSumWasm(original: tf.KernelFunc) {
  return function sumWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'Sum');
    const attrs = args.attrs ?? {};
    const rank = x.shape.length;
    const axes = tf.util
      .parseAxisParam((attrs.axis as number | number[] | undefined) ?? [], x.shape)
      .sort((a, b) => a - b);
    const outer = axes.length === rank - 1 && rank >= 2 && axes.every((a, i) => a === i);
    const last = axes.length === 1 && rank >= 2 && axes[0] === rank - 1;
    const c = x.shape[rank - 1] as number;
    const r = tf.util.sizeFromShape(x.shape) / Math.max(c, 1);
    if (!(outer || last) || x.dtype !== 'float32' || c === 0 || r === 0) {
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const backend = asWasm(args.backend);
    if (last) {
      const out = backend.makeOutput(
        attrs.keepDims === true ? [...x.shape.slice(0, -1), 1] : x.shape.slice(0, -1),
        'float32',
      );
      const xs = f32(backend, x);
      const o = f32(backend, out);
      let i = 0;
      for (let row = 0; row < r; row++) {
        let acc = 0;
        for (let k = 0; k < c; k++) acc += xs[i++] as number;
        o[row] = acc;
      }
      return out;
    }
    const shape = attrs.keepDims === true ? [...new Array<number>(rank - 1).fill(1), c] : [c];
    let src = x;
    let rows = r;
    let scale = 1;
    let pooled: tf.TensorInfo | undefined;
    if (rank === 4 && r >= 256) {
      const h = x.shape[1] as number;
      const w = x.shape[2] as number;
      pooled = runKernel(
        'AvgPool',
        { x },
        { filterSize: [h, w], strides: [1, 1], pad: 'valid', dimRoundingMode: undefined },
        backend,
      );
      src = pooled;
      rows = x.shape[0] as number;
      scale = h * w;
    }
    const out = backend.makeOutput(shape, 'float32');
    const xs = f32(backend, src);
    const acc = new Float64Array(c);
    let i = 0;
    for (let row = 0; row < rows; row++) {
      for (let k = 0; k < c; k++) acc[k] = (acc[k] as number) + (xs[i++] as number);
    }
    if (scale !== 1) for (let k = 0; k < c; k++) acc[k] = (acc[k] as number) * scale;
    f32(backend, out).set(acc);
    if (pooled !== undefined) dispose(backend, pooled);
    return out;
  };
}

export function sumConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Sum', backendName: 'wasm', kernelFunc: makeSumWasm(original) };
}
