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
import { buildConv2d, simdRuntime } from './simdKernels';
import { KernelArgs, asWasm, conv2dInfo, dispose, heapOffset, input, shape4 } from './wasmUtil';

function dilationOne(d: unknown): boolean {
  return d == null || d === 1 || (Array.isArray(d) && d.every((v) => v === 1));
}

export function makeConv2dWasm(original: tf.KernelFunc) {
  return function conv2dWasm(args: KernelArgs): tf.TensorInfo {
    const attrs = args.attrs ?? {};
    const x = input(args.inputs, 'x', 'Conv2D');
    const filter = input(args.inputs, 'filter', 'Conv2D');
    const dataFormat = (attrs.dataFormat as string | undefined) ?? 'NHWC';
    const simd = simdRuntime(args.backend);
    const stock = (): tf.TensorInfo => original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    if (simd === undefined || dataFormat !== 'NHWC' || !dilationOne(attrs.dilations) || x.dtype !== 'float32' || filter.dtype !== 'float32') return stock();
    const filterShape = shape4(filter, 'Conv2D filter');
    const info = conv2dInfo(shape4(x, 'Conv2D x'), filterShape, attrs);
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout } = info;
    const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
    const padTop = info.padInfo.top;
    const padLeft = info.padInfo.left;
    const hp = Math.max(h + padTop, (oh - 1) * sh + kh);
    const wp = Math.max(w + padLeft, (ow - 1) * sw + kw);
    const g = { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout };
    if (cout % 4 !== 0) return stock();

    const backend = asWasm(args.backend);
    const padded = hp !== h || wp !== w || padTop !== 0 || padLeft !== 0 ? backend.makeOutput([n, hp, wp, cin], 'float32') : undefined;
    const out = backend.makeOutput([n, oh, ow, cout], 'float32');
    if (padded !== undefined) padInput(backend, x, padded, { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft }, hp, wp);
    const run = simd.kernel(`Conv2D ${JSON.stringify(g)}`, () => buildConv2d(g));
    if (n > 0 && oh > 0 && ow > 0) run(heapOffset(backend, padded ?? x), heapOffset(backend, filter), heapOffset(backend, out), n);
    if (padded !== undefined) dispose(backend, padded);
    return out;
  };
}

export function conv2dConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Conv2D', backendName: 'wasm', kernelFunc: makeConv2dWasm(original) as unknown as tf.KernelFunc };
}
