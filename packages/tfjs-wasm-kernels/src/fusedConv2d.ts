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
import { dilationOne, simdConv2d } from './conv2d';
import { ConvEpilogue, simdRuntime } from './simdKernels';
import { KernelArgs, input } from './wasmUtil';

/** The activations fused into the generated convolution, as clamps of every output. */
const CLAMPS: Record<string, Omit<ConvEpilogue, 'bias'> | undefined> = {
  linear: {},
  relu: { lower: 0 },
  relu6: { lower: 0, upper: 6 },
};

/** The fused epilogue for these arguments, or undefined when the stock kernel must run them. */
function epilogueFor(args: KernelArgs, x: tf.TensorInfo, filter: tf.TensorInfo): ConvEpilogue | undefined {
  const attrs = args.attrs ?? {};
  const { bias, preluActivationWeights } = args.inputs;
  const clamp = CLAMPS[(attrs.activation as string | undefined) ?? 'linear'];
  const cout = filter.shape[3];
  if (
    clamp === undefined ||
    preluActivationWeights != null ||
    ((attrs.dataFormat as string | undefined) ?? 'NHWC') !== 'NHWC' ||
    !dilationOne(attrs.dilations)
  )
    return undefined;
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
    const out =
      simd === undefined || epilogue === undefined
        ? undefined
        : simdConv2d(simd, args, x, filter, epilogue, args.inputs.bias ?? undefined);
    return out ?? (original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo);
  };
}

export function fusedConv2dConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'FusedConv2D', backendName: 'wasm', kernelFunc: makeFusedConv2dWasm(original) };
}
