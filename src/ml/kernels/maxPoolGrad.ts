/**
 * MaxPoolGrad for the wasm backend as one JS pass over the wasm heap.
 *
 * For every output position and channel the window of the forward input is scanned again for its
 * first maximum (the tie rule of the cpu backend), and dy is added into dx there. The scan runs
 * channel-innermost, so every read is sequential in NHWC memory. The stock wasm kernel is a
 * generic loop several times slower on the peer CNN's shapes.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, f32, input, shape4 } from './wasmUtil';

type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

export function maxPoolGradWasm(args: KernelArgs): tf.TensorInfo {
  const backend = asWasm(args.backend);
  const dy = input(args.inputs, 'dy', 'MaxPoolGrad');
  const x = input(args.inputs, 'input', 'MaxPoolGrad');
  const attrs = args.attrs ?? {};
  const info = tf.backend_util.computePool2DInfo(
    shape4(x, 'MaxPoolGrad input'),
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;

  const dxInfo = backend.makeOutput([...x.shape], 'float32');
  const dx = f32(backend, dxInfo);
  const xs = f32(backend, x);
  const dys = f32(backend, dy);
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

export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: 'MaxPoolGrad',
  backendName: 'wasm',
  kernelFunc: maxPoolGradWasm as unknown as tf.KernelFunc,
};
