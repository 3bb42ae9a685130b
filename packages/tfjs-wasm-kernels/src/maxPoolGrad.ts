/**
 * MaxPoolGrad for the wasm backend.
 *
 * The peer CNN's case, 2x2 windows with stride 2 and channels a multiple of 4, runs as a generated
 * SIMD kernel (simdKernels.ts): four channels at a time, compare-and-select for the window's first
 * maximum, each dx element written once: 0.6 ms CPU per training step for both peer layers (0.2 ms
 * with the data in cache; the rest is memory traffic) against 3.0 ms for the JS pass below, which
 * every other case takes:
 *
 * For every output position and channel the window of the forward input is scanned again for its
 * first maximum (the tie rule of the cpu backend), and dy is added into dx there. The scan runs
 * channel-innermost, so every read is sequential in NHWC memory. The stock wasm kernel is a
 * generic loop several times slower on the peer CNN's shapes.
 */
import * as tf from '@tensorflow/tfjs';
import { buildMaxPoolGrad2x2, simdRuntime } from './simdKernels';
import { asWasm, f32, heapOffset, input, KernelArgs, pool2dInfo } from './wasmUtil';

export function maxPoolGradWasm(args: KernelArgs): tf.TensorInfo {
  const backend = asWasm(args.backend);
  const dy = input(args.inputs, 'dy', 'MaxPoolGrad');
  const x = input(args.inputs, 'input', 'MaxPoolGrad');
  const attrs = args.attrs ?? {};
  const info = pool2dInfo(x, attrs, 'MaxPoolGrad input');
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;

  const dxInfo = backend.makeOutput([...x.shape], 'float32');
  const dx = f32(backend, dxInfo);
  const xs = f32(backend, x);
  const dys = f32(backend, dy);
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && padTop === 0 && padLeft === 0 && 2 * oh <= h && 2 * ow <= w) {
    const simd = c % 4 === 0 ? simdRuntime(args.backend) : undefined;
    if (simd !== undefined) {
      // Every element inside a window is written; zero only those outside (odd sizes).
      zeroUncovered(dx, n, h, w, c, oh, ow);
      const g = { h, w, c, oh, ow };
      const run = simd.kernel(`MaxPoolGrad2x2 ${JSON.stringify(g)}`, () => buildMaxPoolGrad2x2(g));
      if (n > 0 && oh > 0 && ow > 0)
        run(heapOffset(backend, x), heapOffset(backend, dy), heapOffset(backend, dxInfo), n);
    } else {
      dx.fill(0);
      pool2x2(xs, dys, dx, n, h, w, c, oh, ow);
    }
    return dxInfo;
  }
  dx.fill(0);
  const best = new Float32Array(c);
  const pos = new Int32Array(c);
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      const y0 = oy * sh - padTop;
      const fyLo = y0 < 0 ? -y0 : 0;
      const fyHi = Math.min(fh, h - y0);
      for (let ox = 0; ox < ow; ox++) {
        const x0 = ox * sw - padLeft;
        const fxLo = x0 < 0 ? -x0 : 0;
        const fxHi = Math.min(fw, w - x0);
        best.fill(-Infinity);
        pos.fill(-1);
        for (let fy = fyLo; fy < fyHi; fy++) {
          const row = (b * h + y0 + fy) * w;
          for (let fx = fxLo; fx < fxHi; fx++) {
            const base = (row + x0 + fx) * c;
            for (let k = 0; k < c; k++) {
              const v = xs[base + k] as number;
              if (v > (best[k] as number)) {
                best[k] = v;
                pos[k] = base + k;
              }
            }
          }
        }
        const d = ((b * oh + oy) * ow + ox) * c;
        for (let k = 0; k < c; k++) {
          const p = pos[k] as number;
          if (p >= 0) dx[p] = (dx[p] as number) + (dys[d + k] as number);
        }
      }
    }
  }
  return dxInfo;
}

/** Zeroes the rows and columns of dx that no 2x2 window covers (the last of an odd size). */
function zeroUncovered(dx: Float32Array, n: number, h: number, w: number, c: number, oh: number, ow: number): void {
  const row = w * c;
  for (let b = 0; b < n; b++) {
    const image = b * h * row;
    if (2 * ow < w) for (let y = 0; y < 2 * oh; y++) dx.fill(0, image + y * row + 2 * ow * c, image + (y + 1) * row);
    if (2 * oh < h) dx.fill(0, image + 2 * oh * row, image + h * row);
  }
}

/**
 * The common 2x2 / stride 2 case with every window inside the image: windows do not overlap, so
 * each dx element gets at most one dy and is assigned, not accumulated.
 */
function pool2x2(
  xs: Float32Array,
  dys: Float32Array,
  dx: Float32Array,
  n: number,
  h: number,
  w: number,
  c: number,
  oh: number,
  ow: number,
): void {
  const rowStride = w * c;
  let d = 0;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      let p00 = (b * h + 2 * oy) * rowStride;
      for (let ox = 0; ox < ow; ox++) {
        const p01 = p00 + c;
        const p10 = p00 + rowStride;
        const p11 = p10 + c;
        for (let k = 0; k < c; k++) {
          // First maximum in row-major window order (NaN never wins), as the generic loop and
          // the cpu backend pick it.
          let m = -Infinity;
          let p = -1;
          const v00 = xs[p00 + k] as number;
          if (v00 > m) {
            m = v00;
            p = p00 + k;
          }
          const v01 = xs[p01 + k] as number;
          if (v01 > m) {
            m = v01;
            p = p01 + k;
          }
          const v10 = xs[p10 + k] as number;
          if (v10 > m) {
            m = v10;
            p = p10 + k;
          }
          if ((xs[p11 + k] as number) > m) p = p11 + k;
          if (p >= 0) dx[p] = dys[d + k] as number;
        }
        d += c;
        p00 += 2 * c;
      }
    }
  }
}

export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: 'MaxPoolGrad',
  backendName: 'wasm',
  kernelFunc: maxPoolGradWasm,
};
