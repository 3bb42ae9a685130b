/**
 * FusedConv2D (conv + bias + activation, what tfjs-layers' Conv2D calls at inference) for the wasm
 * backend: the generated SIMD convolution (simdKernels.ts buildConv2d, as the project Conv2D) with
 * the bias and the activation fused into it: each register tile starts from the bias vector and is
 * clamped as it is stored (relu: max(x, 0); relu6: and min(x, 6)). NHWC, dilation 1, cout % 4 == 0,
 * float32, activation linear / relu / relu6, a rank-1 bias or none; everything else (prelu,
 * leakyrelu, elu, sigmoid, preluActivationWeights, NCHW, dilation, other channel counts) goes to
 * the stock XNNPACK kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { padInput } from './conv2dBackpropFilter';
import { ConvEpilogue, buildConv2d, simdRuntime } from './simdKernels';
import { KernelArgs, asWasm, conv2dInfo, dispose, heapOffset, input, shape4 } from './wasmUtil';

/** The activations fused into the generated convolution, as clamps of every output. */
const CLAMPS: Record<string, Omit<ConvEpilogue, 'bias'> | undefined> = {
  linear: {},
  relu: { lower: 0 },
  relu6: { lower: 0, upper: 6 },
};

function isOne(d: unknown): boolean {
  return d == null || d === 1 || (Array.isArray(d) && d.every((v) => v === 1));
}

/** The fused epilogue for these arguments, or undefined when the stock kernel must run them. */
function epilogueFor(args: KernelArgs, x: tf.TensorInfo, filter: tf.TensorInfo): ConvEpilogue | undefined {
  const attrs = args.attrs ?? {};
  const { bias, preluActivationWeights } = args.inputs;
  const clamp = CLAMPS[(attrs.activation as string | undefined) ?? 'linear'];
  const cout = filter.shape[3];
  if (clamp === undefined || preluActivationWeights != null || ((attrs.dataFormat as string | undefined) ?? 'NHWC') !== 'NHWC' || !isOne(attrs.dilations)) return undefined;
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || cout === undefined || cout % 4 !== 0) return undefined;
  if (bias != null && (bias.dtype !== 'float32' || bias.shape.length !== 1 || bias.shape[0] !== cout)) return undefined;
  return { bias: bias != null, ...clamp };
}

export function makeFusedConv2dWasm(original: tf.KernelFunc) {
  return function fusedConv2dWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'FusedConv2D');
    const filter = input(args.inputs, 'filter', 'FusedConv2D');
    const simd = simdRuntime(args.backend);
    const epilogue = simd === undefined ? undefined : epilogueFor(args, x, filter);
    if (simd === undefined || epilogue === undefined) return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    const info = conv2dInfo(shape4(x, 'FusedConv2D x'), shape4(filter, 'FusedConv2D filter'), args.attrs ?? {});
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout, outHeight: oh, outWidth: ow } = info;
    const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, padInfo } = info;
    const { top: padTop, left: padLeft } = padInfo;
    // The padded input the generated loop reads: every window in bounds.
    const hp = Math.max(h + padTop, (oh - 1) * sh + kh);
    const wp = Math.max(w + padLeft, (ow - 1) * sw + kw);
    const backend = asWasm(args.backend);
    const needsPad = hp !== h || wp !== w || padTop !== 0 || padLeft !== 0;
    const padded = needsPad ? backend.makeOutput([n, hp, wp, cin], 'float32') : undefined;
    const out = backend.makeOutput([n, oh, ow, cout], 'float32');
    if (padded !== undefined) padInput(backend, x, padded, { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft }, hp, wp);
    const g = { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout };
    const run = simd.kernel(`FusedConv2D ${JSON.stringify({ ...g, ...epilogue })}`, () => buildConv2d(g, undefined, epilogue));
    if (n > 0 && oh > 0 && ow > 0) {
      const src = heapOffset(backend, padded ?? x);
      const bias = args.inputs.bias;
      if (bias != null) run(src, heapOffset(backend, filter), heapOffset(backend, out), heapOffset(backend, bias), n);
      else run(src, heapOffset(backend, filter), heapOffset(backend, out), n);
    }
    if (padded !== undefined) dispose(backend, padded);
    return out;
  };
}

export function fusedConv2dConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'FusedConv2D', backendName: 'wasm', kernelFunc: makeFusedConv2dWasm(original) as unknown as tf.KernelFunc };
}
