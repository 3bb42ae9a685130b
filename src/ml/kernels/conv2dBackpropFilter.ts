/**
 * Conv2DBackpropFilter for the wasm backend (tfjs 4.22 registers none, so training any conv net on
 * wasm fails without it).
 *
 * dW[kh,kw,cin,cout] = sum over batch and output positions of x[b, y*s+i-pad, x*s+j-pad, c] * dy[b,y,x,o].
 * Written as one matrix product: colsT [K = kh*kw*cin, M = batch*outH*outW] (the im2col matrix,
 * built already transposed by a JS loop straight into the wasm heap) times dy viewed as [M, cout].
 * Neither operand is transposed, which is the case the wasm BatchMatMul hands to XNNPACK; with a
 * transposed operand it falls back to a loop ten times slower.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, dispose, f32, input, runKernel, shape4 } from './wasmUtil';

type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

export function conv2dBackpropFilterWasm(args: KernelArgs): tf.TensorInfo {
  const backend = asWasm(args.backend);
  const x = input(args.inputs, 'x', 'Conv2DBackpropFilter');
  const dy = input(args.inputs, 'dy', 'Conv2DBackpropFilter');
  const attrs = args.attrs ?? {};
  const dataFormat = (attrs.dataFormat as 'NHWC' | 'NCHW' | undefined) ?? 'NHWC';
  if (dataFormat !== 'NHWC') {
    throw new Error(`wasm Conv2DBackpropFilter supports dataFormat NHWC only, got ${dataFormat}`);
  }
  const filterShape = attrs.filterShape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    shape4(x, 'Conv2DBackpropFilter x'),
    filterShape,
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    'channelsLast',
  );
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout } = info;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const [, dyH, dyW, dyC] = shape4(dy, 'Conv2DBackpropFilter dy');
  if (dyH !== oh || dyW !== ow || dyC !== cout) {
    throw new Error(`Conv2DBackpropFilter: dy shape [${dy.shape.join(',')}] does not match output [${n},${oh},${ow},${cout}]`);
  }
  const K = kh * kw * cin;
  const M = n * oh * ow;

  const colsT = backend.makeOutput([1, K, M], 'float32');
  const xs = f32(backend, x);
  const cols = f32(backend, colsT);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      // Output columns whose input column ox*sw - padLeft + j lies inside the image.
      let oxLo = Math.ceil((padLeft - j) / sw);
      if (oxLo < 0) oxLo = 0;
      let oxHi = Math.floor((w - 1 + padLeft - j) / sw) + 1;
      if (oxHi > ow) oxHi = ow;
      if (oxHi < oxLo) oxHi = oxLo;
      for (let c = 0; c < cin; c++) {
        let o = ((i * kw + j) * cin + c) * M;
        for (let b = 0; b < n; b++) {
          for (let oy = 0; oy < oh; oy++) {
            const iy = oy * sh - padTop + i;
            if (iy < 0 || iy >= h) {
              cols.fill(0, o, o + ow);
              o += ow;
              continue;
            }
            if (oxLo > 0) cols.fill(0, o, o + oxLo);
            let src = ((b * h + iy) * w + oxLo * sw - padLeft + j) * cin + c;
            const step = sw * cin;
            for (let ox = oxLo; ox < oxHi; ox++) {
              cols[o + ox] = xs[src] as number;
              src += step;
            }
            if (oxHi < ow) cols.fill(0, o + oxHi, o + ow);
            o += ow;
          }
        }
      }
    }
  }

  const dy3: tf.TensorInfo = { dataId: dy.dataId, shape: [1, M, cout], dtype: 'float32' };
  const out = runKernel('BatchMatMul', { a: colsT, b: dy3 }, { transposeA: false, transposeB: false }, backend);
  dispose(backend, colsT);
  return { dataId: out.dataId, shape: [kh, kw, cin, cout], dtype: 'float32' };
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilterWasm as unknown as tf.KernelFunc,
};
