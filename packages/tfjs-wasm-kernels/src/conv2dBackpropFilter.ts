/**
 * Conv2DBackpropFilter for the wasm backend (tfjs 4.22 registers none, so training any conv net on
 * wasm fails without it).
 *
 * dW[kh,kw,cin,cout] = sum over batch and output positions of x[b, y*s+i-pad, x*s+j-pad, c] * dy[b,y,x,o].
 *
 * When cout % 4 == 0 (and the engine has wasm SIMD), a generated SIMD kernel (simdKernels.ts)
 * computes it in place from x (zero-padded into a scratch tensor first if the conv pads) and dy.
 * On the peer CNN that is 0.25 + 1.45 ms CPU for its two layers (data in cache; 2.4 ms in a
 * training step) against 2.5 + 3.5 ms for the XNNPACK composition below, whose costs are not the
 * arithmetic: XNNPACK's fully-connected operator repacks its right operand on every call (2.2 ns
 * per element: 1.6 ms for the first layer's dy [43264 x 16]), plus im2col and a Transpose.
 *
 * Otherwise: one matrix product between the im2col matrix of x (K = kh*kw*cin by M =
 * batch*outH*outW, built by a JS loop straight into the wasm heap) and dy viewed as [M, cout], run
 * by the backend's BatchMatMul with untransposed operands, the case it hands to XNNPACK (with a
 * transposed operand it falls back to a loop ten times slower): dW = colsT [K, M] x dy [M, cout].
 * colsT is built
 *  - cin >= 4: as cols [M, K] from contiguous runs (TypedArray.set), then the backend's Transpose;
 *  - cin < 4 (first layers): directly, by strided gathers.
 */
import * as tf from '@tensorflow/tfjs';
import { buildConv2dBackpropFilter, simdRuntime } from './simdKernels';
import {
  KernelArgs,
  WasmBackendLike,
  asWasm,
  conv2dInfo,
  dispose,
  f32,
  heapOffset,
  input,
  runKernel,
  shape4,
} from './wasmUtil';

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
  const info = conv2dInfo(shape4(x, 'Conv2DBackpropFilter x'), filterShape, attrs);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout } = info;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const [, dyH, dyW, dyC] = shape4(dy, 'Conv2DBackpropFilter dy');
  if (dyH !== oh || dyW !== ow || dyC !== cout) {
    throw new Error(
      `Conv2DBackpropFilter: dy shape [${dy.shape.join(',')}] does not match output [${n},${oh},${ow},${cout}]`,
    );
  }
  const K = kh * kw * cin;
  const M = n * oh * ow;
  const geometry: Geometry = { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft };

  const simd = cout % 4 === 0 ? simdRuntime(args.backend) : undefined;
  if (simd !== undefined) {
    // Pad so that every window lies inside: rows up to (oh-1)*sh + kh, columns likewise.
    const hp = Math.max(h + padTop, (oh - 1) * sh + kh);
    const wp = Math.max(w + padLeft, (ow - 1) * sw + kw);
    const padded =
      hp !== h || wp !== w || padTop !== 0 || padLeft !== 0
        ? backend.makeOutput([n, hp, wp, cin], 'float32')
        : undefined;
    const out = backend.makeOutput([kh, kw, cin, cout], 'float32');
    if (padded !== undefined) padInput(backend, x, padded, geometry, hp, wp);
    f32(backend, out).fill(0);
    const g = { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout };
    const run = simd.kernel(`Conv2DBackpropFilter ${JSON.stringify(g)}`, () => buildConv2dBackpropFilter(g));
    if (n > 0 && oh > 0 && ow > 0)
      run(heapOffset(backend, padded ?? x), heapOffset(backend, dy), heapOffset(backend, out), n);
    if (padded !== undefined) dispose(backend, padded);
    return out;
  }

  // XNNPACK packs the right operand of every product anew (it is a new tensor each step), so that
  // operand must be the small one: dy [M, cout], not the im2col matrix [M, K].
  let colsT: tf.TensorInfo;
  if (cin >= 4) {
    // Rows of the im2col matrix are runs of kw*cin contiguous input values: build it [M, K] with
    // TypedArray.set, then transpose it with the backend's (XNNPACK) Transpose.
    const cols = backend.makeOutput([1, M, K], 'float32');
    im2col(f32(backend, x), f32(backend, cols), geometry);
    colsT = runKernel('Transpose', { x: cols }, { perm: [0, 2, 1] }, backend);
    dispose(backend, cols);
  } else {
    // Few input channels (a first layer): gather the transposed matrix directly.
    colsT = backend.makeOutput([1, K, M], 'float32');
    im2colTransposed(f32(backend, x), f32(backend, colsT), geometry);
  }
  const dy3: tf.TensorInfo = { dataId: dy.dataId, shape: [1, M, cout], dtype: 'float32' };
  const prod = runKernel('BatchMatMul', { a: colsT, b: dy3 }, { transposeA: false, transposeB: false }, backend);
  dispose(backend, colsT);
  const out: tf.TensorInfo = { dataId: prod.dataId, shape: [kh, kw, cin, cout], dtype: 'float32' };
  return out;
}

/** xp[b, padTop + y, padLeft + x, c] = x[b, y, x, c], zero elsewhere (xp is [n, hp, wp, cin]). */
export function padInput(
  backend: WasmBackendLike,
  x: tf.TensorInfo,
  padded: tf.TensorInfo,
  g: Geometry,
  hp: number,
  wp: number,
): void {
  const { n, h, w, cin, padTop, padLeft } = g;
  const src = f32(backend, x);
  const dst = f32(backend, padded);
  dst.fill(0);
  const rowIn = w * cin;
  // Rows of x that land inside xp (it may be cut short below when the last rows are never read).
  const rows = Math.min(h, hp - padTop);
  const run = Math.min(w, wp - padLeft) * cin;
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < rows; y++) {
      const s = (b * h + y) * rowIn;
      dst.set(src.subarray(s, s + run), ((b * hp + padTop + y) * wp + padLeft) * cin);
    }
  }
}

export interface Geometry {
  n: number;
  h: number;
  w: number;
  cin: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  kh: number;
  kw: number;
  padTop: number;
  padLeft: number;
}

/** cols[(b,oy,ox), (i,j,c)] = x[b, oy*sh-padTop+i, ox*sw-padLeft+j, c], 0 outside the image. */
export function im2col(xs: Float32Array, cols: Float32Array, g: Geometry): void {
  const { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft } = g;
  const run = kw * cin;
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const x0 = ox * sw - padLeft;
        const inside = x0 >= 0 && x0 + kw <= w;
        for (let i = 0; i < kh; i++) {
          const iy = oy * sh - padTop + i;
          if (iy < 0 || iy >= h) {
            cols.fill(0, o, o + run);
          } else if (inside) {
            const s = ((b * h + iy) * w + x0) * cin;
            cols.set(xs.subarray(s, s + run), o);
          } else {
            for (let j = 0; j < kw; j++) {
              const ix = x0 + j;
              const d = o + j * cin;
              if (ix < 0 || ix >= w) cols.fill(0, d, d + cin);
              else {
                const s = ((b * h + iy) * w + ix) * cin;
                cols.set(xs.subarray(s, s + cin), d);
              }
            }
          }
          o += run;
        }
      }
    }
  }
}

/** colsT[(i,j,c), (b,oy,ox)]: the transpose of im2col's matrix. */
export function im2colTransposed(xs: Float32Array, cols: Float32Array, g: Geometry): void {
  const { n, h, w, cin, oh, ow, sh, sw, kh, kw, padTop, padLeft } = g;
  const M = n * oh * ow;
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
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilterWasm,
};
