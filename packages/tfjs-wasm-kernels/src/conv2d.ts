/**
 * Conv2D for the wasm backend: a generated SIMD kernel (simdKernels.ts buildConv2d) when the
 * output channels are a multiple of 4 (NHWC, dilation 1); the stock XNNPACK kernel otherwise.
 *
 * XNNPACK is weak on the peer CNN's convolutions: its first layer (one input channel, 6.2M
 * multiply-adds per batch of 64) takes 0.64 ms CPU, its second (35.7M) 1.75 ms. The generated
 * kernel reads x (zero-padded into a scratch tensor first if the conv pads) and the filter in
 * place; each tile of 4 output positions x 8 output channels sums its kh*kw*cin products in
 * registers: 0.36 and 1.2 ms (batch 64, data in cache, measured A/B in one process). keeps a tile of 4
 */
import * as tf from '@tensorflow/tfjs';
import { padInput } from './conv2dBackpropFilter';
import { ConvEpilogue, SimdRuntime, buildConv2d, simdRuntime } from './simdKernels';
import { KernelArgs, asWasm, conv2dInfo, dispose, heapOffset, input, shape4 } from './wasmUtil';

export function dilationOne(d: unknown): boolean {
  return d == null || d === 1 || (Array.isArray(d) && d.every((v) => v === 1));
}

/**
 * Runs x (NHWC, float32) through the generated convolution, with the epilogue's bias (the tensor
 * `bias`) and clamps when given; undefined when the geometry is not one it handles (cout % 4 != 0).
 * The caller has checked data format, dilation and dtypes.
 */
export function simdConv2d(
  simd: SimdRuntime,
  args: KernelArgs,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  epilogue?: ConvEpilogue,
  bias?: tf.TensorInfo,
): tf.TensorInfo | undefined {
  const info = conv2dInfo(shape4(x, 'Conv2D x'), shape4(filter, 'Conv2D filter'), args.attrs ?? {});
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout } = info;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  if (cout % 4 !== 0) return undefined;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  // The padded input the generated loop reads: every window in bounds.
  const hp = Math.max(h + padTop, (oh - 1) * sh + kh);
  const wp = Math.max(w + padLeft, (ow - 1) * sw + kw);
  const g = { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout };
  const backend = asWasm(args.backend);
  const padded =
    hp !== h || wp !== w || padTop !== 0 || padLeft !== 0 ? backend.makeOutput([n, hp, wp, cin], 'float32') : undefined;
  const out = backend.makeOutput([n, oh, ow, cout], 'float32');
  if (padded !== undefined)
    padInput(backend, x, padded, { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft }, hp, wp);
  const run = simd.kernel(`Conv2D ${JSON.stringify({ ...g, ...epilogue })}`, () => buildConv2d(g, undefined, epilogue));
  if (n > 0 && oh > 0 && ow > 0) {
    const ptrs = [heapOffset(backend, padded ?? x), heapOffset(backend, filter), heapOffset(backend, out)];
    if (epilogue?.bias === true && bias !== undefined) ptrs.push(heapOffset(backend, bias));
    run(...ptrs, n);
  }
  if (padded !== undefined) dispose(backend, padded);
  return out;
}

export function makeConv2dWasm(original: tf.KernelFunc) {
  return function conv2dWasm(args: KernelArgs): tf.TensorInfo {
    const attrs = args.attrs ?? {};
    const x = input(args.inputs, 'x', 'Conv2D');
    const filter = input(args.inputs, 'filter', 'Conv2D');
    const dataFormat = (attrs.dataFormat as string | undefined) ?? 'NHWC';
    const simd = simdRuntime(args.backend);
    const stock = (): tf.TensorInfo => original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    if (
      simd === undefined ||
      dataFormat !== 'NHWC' ||
      !dilationOne(attrs.dilations) ||
      x.dtype !== 'float32' ||
      filter.dtype !== 'float32'
    )
      return stock();
    return simdConv2d(simd, args, x, filter) ?? stock();
  };
}

export function conv2dConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Conv2D', backendName: 'wasm', kernelFunc: makeConv2dWasm(original) };
}
