/**
 * Conv2DBackpropInput for the wasm backend, as a forward convolution run by the backend's own
 * (XNNPACK) Conv2D kernel. The stock wasm kernel is a plain loop, about 8x slower on the peer CNN.
 *
 * dx = conv2d(dy', rot180(W) with in/out channels swapped), where dy' is dy with (stride-1) zeros
 * between its pixels and (k-1-pad) zeros around it. For stride 1 (the common case) dy' is not
 * built: the padding goes to Conv2D as explicit padding. Otherwise a JS loop scatters dy into a
 * zeroed buffer of the padded size and the convolution runs with 'valid' padding.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, conv2dInfo, dispose, f32, input, runKernel, shape4 } from './wasmUtil';


/** W [kh,kw,cin,cout] -> W' [kh,kw,cout,cin] with W'[i,j,o,c] = W[kh-1-i, kw-1-j, c, o]. */
export function flipTransposeFilter(src: Float32Array, dst: Float32Array, kh: number, kw: number, cin: number, cout: number): void {
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const s = ((kh - 1 - i) * kw + (kw - 1 - j)) * cin * cout;
      const d = (i * kw + j) * cout * cin;
      for (let c = 0; c < cin; c++) {
        for (let o = 0; o < cout; o++) {
          dst[d + o * cin + c] = src[s + c * cout + o] as number;
        }
      }
    }
  }
}

export function makeConv2dBackpropInputWasm(original: tf.KernelFunc | undefined) {
  return function conv2dBackpropInputWasm(args: KernelArgs): tf.TensorInfo {
    const attrs = args.attrs ?? {};
    const dataFormat = (attrs.dataFormat as 'NHWC' | 'NCHW' | undefined) ?? 'NHWC';
    if (dataFormat !== 'NHWC') {
      if (original == null) throw new Error(`wasm Conv2DBackpropInput supports dataFormat NHWC only, got ${dataFormat}`);
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const backend = asWasm(args.backend);
    const dy = input(args.inputs, 'dy', 'Conv2DBackpropInput');
    const filter = input(args.inputs, 'filter', 'Conv2DBackpropInput');
    const inputShape = attrs.inputShape as [number, number, number, number];
    const info = conv2dInfo(inputShape, shape4(filter, 'Conv2DBackpropInput filter'), attrs);
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: cin, outChannels: cout } = info;
    const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
    const [, dyH, dyW, dyC] = shape4(dy, 'Conv2DBackpropInput dy');
    if (dyH !== oh || dyW !== ow || dyC !== cout) {
      throw new Error(`Conv2DBackpropInput: dy shape [${dy.shape.join(',')}] does not match output [${n},${oh},${ow},${cout}]`);
    }
    const padT = kh - 1 - info.padInfo.top;
    const padL = kw - 1 - info.padInfo.left;
    const padB = h - ((oh - 1) * sh + 1) - padT + kh - 1;
    const padR = w - ((ow - 1) * sw + 1) - padL + kw - 1;

    const wT = backend.makeOutput([kh, kw, cout, cin], 'float32');
    const direct = sh === 1 && sw === 1 && padT >= 0 && padL >= 0 && padB >= 0 && padR >= 0;
    let src: tf.TensorInfo = dy;
    let buffer: tf.TensorInfo | undefined;
    const hp = h + kh - 1;
    const wp = w + kw - 1;
    if (!direct) buffer = backend.makeOutput([n, hp, wp, cout], 'float32');
    // Views only after the last allocation: allocating may grow (and so detach) the heap.
    flipTransposeFilter(f32(backend, filter), f32(backend, wT), kh, kw, cin, cout);
    if (buffer != null) {
      const dst = f32(backend, buffer);
      const dys = f32(backend, dy);
      dst.fill(0);
      for (let b = 0; b < n; b++) {
        for (let oy = 0; oy < oh; oy++) {
          const py = padT + oy * sh;
          if (py < 0 || py >= hp) continue;
          for (let ox = 0; ox < ow; ox++) {
            const px = padL + ox * sw;
            if (px < 0 || px >= wp) continue;
            const s = ((b * oh + oy) * ow + ox) * cout;
            dst.set(dys.subarray(s, s + cout), ((b * hp + py) * wp + px) * cout);
          }
        }
      }
      src = buffer;
    }
    const pad = direct ? [[0, 0], [padT, padB], [padL, padR], [0, 0]] : 'valid';
    const out = runKernel(
      'Conv2D',
      { x: src, filter: wT },
      { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined },
      backend,
    );
    dispose(backend, wT);
    if (buffer != null) dispose(backend, buffer);
    return out;
  };
}

export function conv2dBackpropInputConfig(original: tf.KernelFunc | undefined): tf.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropInput',
    backendName: 'wasm',
    kernelFunc: makeConv2dBackpropInputWasm(original) as unknown as tf.KernelFunc,
  };
}
