/**
 * Sum for the wasm backend, with the reduction of every axis but the last (a bias gradient: dy
 * [batch, h, w, c] -> [c]) done by one sequential JS pass over the heap, accumulating in float64.
 * The stock kernel transposes the tensor first and then reduces (~2 ms per step for the peer CNN's
 * first conv); a ones x dy product on XNNPACK is no better, as XNNPACK repacks dy every call.
 * Every other reduction goes to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, f32, input } from './wasmUtil';

export function makeSumWasm(original: tf.KernelFunc) {
  return function sumWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'Sum');
    const attrs = args.attrs ?? {};
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam((attrs.axis as number | number[] | undefined) ?? [], x.shape).sort((a, b) => a - b);
    const outer = axes.length === rank - 1 && rank >= 2 && axes.every((a, i) => a === i);
    const c = x.shape[rank - 1] as number;
    const r = tf.util.sizeFromShape(x.shape) / Math.max(c, 1);
    if (!outer || x.dtype !== 'float32' || c === 0 || r < 256) {
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const backend = asWasm(args.backend);
    const shape = attrs.keepDims === true ? [...new Array<number>(rank - 1).fill(1), c] : [c];
    const out = backend.makeOutput(shape, 'float32');
    const xs = f32(backend, x);
    const acc = new Float64Array(c);
    let i = 0;
    for (let row = 0; row < r; row++) {
      for (let k = 0; k < c; k++) acc[k] = (acc[k] as number) + (xs[i++] as number);
    }
    f32(backend, out).set(acc);
    return out;
  };
}

export function sumConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Sum', backendName: 'wasm', kernelFunc: makeSumWasm(original) as unknown as tf.KernelFunc };
}
