/**
 * Winograd F(4x4, 3x3) convolution for inference on the wasm backend: the kernel
 * TriageWinogradConv2D, which the application's scoring path (src/ml/inference.ts) calls for the
 * 3x3 stride-1 convolutions of a model it scores (the screening CNN's conv2..conv5).
 *
 * Each 4x4 block ("tile") of outputs is computed from the 6x6 block of inputs around it: V = B^T d B
 * per input channel, then 36 matrix products M[xi] = V[xi] U[xi] over the channels, with U = G g G^T
 * the filter transformed once (winogradFilter, in float64, when the model is prepared), then
 * Y = A^T M A per output channel, plus the bias and the relu. 36 multiply-adds per tile and channel
 * pair where the direct convolution does 144 (4x fewer), for three cheap transforms (adds and
 * multiplies by 2, 4, 5, 8 over four channels at a time).
 *
 * The generated module (per geometry, cached like every kernel of simdKernels.ts) works in chunks of
 * CHUNK tiles: the input transforms of a chunk's tiles go to a scratch V [36, CHUNK, cin], the 36
 * products to M [36, CHUNK, cout] (simdKernels.ts tiledBlock, the register tiling of the direct
 * convolution), and the output transforms write the tiles' 16 outputs each, relu'd. A chunk keeps
 * the products' operands in L1/L2. Which tiles make a chunk comes from a list of (input, output)
 * heap addresses written by this file; the last chunk is filled up by repeating the last tile, which
 * computes and writes the same values again.
 *
 * Takes NHWC float32, a 3x3 filter, stride 1, dilation 1, 'same' or 'valid' padding, cin and cout
 * multiples of 4, output height and width multiples of 4 (winogradFits). The caller checks that
 * before it calls the kernel; the kernel itself runs the stock FusedConv2D with the untransformed filter when
 * the SIMD kernels cannot run (no wasm SIMD).
 */
import * as tf from '@tensorflow/tfjs';
import { padInput } from './conv2dBackpropFilter';
import { CONV_TILE, SimdRuntime, simdRuntime, tiledBlock } from './simdKernels';
import { FunctionBuilder, I32, V128 } from './wasmAsm';
import { KernelArgs, asWasm, conv2dInfo, dispose, heapOffset, input, runKernel, shape4 } from './wasmUtil';

export const WINOGRAD_KERNEL = 'TriageWinogradConv2D';

/** Tiles per chunk (a multiple of CONV_TILE.positions). */
export const WINOGRAD_CHUNK = 32;

/** F(4x4, 3x3)'s filter transform G (6x3). */
const G = [
  [1 / 4, 0, 0],
  [-1 / 6, -1 / 6, -1 / 6],
  [-1 / 6, 1 / 6, -1 / 6],
  [1 / 24, 1 / 12, 1 / 6],
  [1 / 24, -1 / 12, 1 / 6],
  [0, 0, 1],
];

/** U = G g G^T for a filter g [3, 3, cin, cout] (flat, HWIO): U [36, cin, cout], computed in float64. */
export function winogradFilter(g: Float32Array | Float64Array, cin: number, cout: number): Float32Array {
  if (g.length !== 9 * cin * cout)
    throw new Error(`winogradFilter: expected ${9 * cin * cout} values, got ${g.length}`);
  const u = new Float32Array(36 * cin * cout);
  const at = (i: number, j: number, k: number): number => g[(i * 3 + j) * cin * cout + k] as number;
  for (let k = 0; k < cin * cout; k++) {
    // t = G g (6x3), then U = t G^T (6x6).
    const t: number[][] = G.map((row) =>
      [0, 1, 2].map((j) => row[0]! * at(0, j, k) + row[1]! * at(1, j, k) + row[2]! * at(2, j, k)),
    );
    for (let a = 0; a < 6; a++)
      for (let b = 0; b < 6; b++) {
        const ta = t[a] as number[];
        const gb = G[b] as number[];
        u[(a * 6 + b) * cin * cout + k] = ta[0]! * gb[0]! + ta[1]! * gb[1]! + ta[2]! * gb[2]!;
      }
  }
  return u;
}

/** Whether the kernel takes a convolution of this geometry (NHWC, 3x3, stride 1, dilation 1). */
export function winogradFits(cin: number, cout: number, oh: number, ow: number): boolean {
  return cin % 4 === 0 && cout % 4 === 0 && oh % 4 === 0 && ow % 4 === 0 && oh > 0 && ow > 0;
}

export interface WinogradGeometry {
  cin: number;
  cout: number;
  /** Row length of the padded input (ow + 2) and of the output. */
  wp: number;
  ow: number;
  relu: boolean;
  /** A 2x2 / stride 2 max pool of the outputs too: each tile writes its 2x2 maxima (output row length ow / 2). */
  pool?: boolean;
}

/** i32.load (an address on the stack) + offset: the FunctionBuilder has no scalar loads. */
function loadI32(fn: FunctionBuilder, offset: number): FunctionBuilder {
  if (offset < 0 || offset > 127) throw new Error('loadI32: small offsets only');
  fn.code.push(0x28, 0x02, offset);
  return fn;
}

/**
 * run(tiles, u, bias, scratch, chunks): for each of `chunks` chunks of WINOGRAD_CHUNK tiles, whose
 * (padded input, output) tile addresses are consecutive i32 pairs from `tiles`: the input transform
 * of every tile into V (at scratch), the 36 products into M (after V), the output transforms.
 */
export function buildWinogradConv(g: WinogradGeometry, chunk: number = WINOGRAD_CHUNK): FunctionBuilder[] {
  const { cin, cout, wp, ow, relu } = g;
  const pool = g.pool === true;
  if (cin % 4 !== 0 || cout % 4 !== 0 || chunk % CONV_TILE.positions !== 0)
    throw new Error('buildWinogradConv needs cin, cout multiples of 4 and a chunk of whole register tiles');
  const vStride = slabBytes(chunk, cin);
  const mStride = slabBytes(chunk, cout);
  const vBytes = 36 * vStride;
  const fns: FunctionBuilder[] = [];
  const main = new FunctionBuilder([I32, I32, I32, I32, I32]);
  fns.push(main);

  // 1: inT(x, v): V[xi, ., c] = (B^T d B)[xi] for the 6x6 input block at x, four channels at a time.
  const inT = new FunctionBuilder([I32, I32]);
  fns.push(inT);
  {
    const [X, V] = [0, 1];
    const left = inT.local(I32);
    const d = Array.from({ length: 6 }, () => inT.local(V128));
    const [c2, c4, c5] = [inT.local(V128), inT.local(V128), inT.local(V128)];
    const [p, q] = [inT.local(V128), inT.local(V128)];
    inT.f32x4Const(2).set(c2).f32x4Const(4).set(c4).f32x4Const(5).set(c5);
    const slot = (r: number, col: number): number => (r * 6 + col) * vStride;
    // B^T applied to d[0..5] (locals), each result stored by `put(k)` after its value is on the stack.
    const bt = (put: (k: number, value: () => void) => void): void => {
      const D = (k: number): number => d[k] as number;
      // r0 = 4 d0 - 5 d2 + d4
      put(0, () => inT.get(D(0)).get(c4).f32x4Mul().get(D(2)).get(c5).f32x4Mul().f32x4Sub().get(D(4)).f32x4Add());
      // r1 = (d3 + d4) - 4 (d1 + d2); r2 = (d4 - d3) + 4 (d1 - d2)
      inT.get(D(1)).get(D(2)).f32x4Add().get(c4).f32x4Mul().set(p);
      inT.get(D(1)).get(D(2)).f32x4Sub().get(c4).f32x4Mul().set(q);
      put(1, () => inT.get(D(3)).get(D(4)).f32x4Add().get(p).f32x4Sub());
      put(2, () => inT.get(D(4)).get(D(3)).f32x4Sub().get(q).f32x4Add());
      // r3 = (d4 - d2) + 2 (d3 - d1); r4 = (d4 - d2) - 2 (d3 - d1)
      inT.get(D(4)).get(D(2)).f32x4Sub().set(p);
      inT.get(D(3)).get(D(1)).f32x4Sub().get(c2).f32x4Mul().set(q);
      put(3, () => inT.get(p).get(q).f32x4Add());
      put(4, () => inT.get(p).get(q).f32x4Sub());
      // r5 = 4 d1 - 5 d3 + d5
      put(5, () => inT.get(D(1)).get(c4).f32x4Mul().get(D(3)).get(c5).f32x4Mul().f32x4Sub().get(D(5)).f32x4Add());
    };
    inT.i32(cin / 4).set(left);
    inT.loop(() => {
      // Columns: t[., col] = B^T d[., col], into V's slots.
      for (let col = 0; col < 6; col++) {
        for (let r = 0; r < 6; r++)
          inT
            .get(X)
            .load((r * wp + col) * cin * 4)
            .set(d[r] as number);
        bt((k, value) => {
          inT.get(V);
          value();
          inT.store(slot(k, col));
        });
      }
      // Rows: V[r, .] = t[r, .] B.
      for (let r = 0; r < 6; r++) {
        for (let col = 0; col < 6; col++)
          inT
            .get(V)
            .load(slot(r, col))
            .set(d[col] as number);
        bt((k, value) => {
          inT.get(V);
          value();
          inT.store(slot(r, k));
        });
      }
      inT.inc(X, 16).inc(V, 16);
      inT.inc(left, -1).get(left).brIf(0);
    });
  }

  // 2, 3: the products, one register block of CONV_TILE.vecs (or fewer) output-channel vectors.
  const gemm = (vecs: number): number => {
    fns.push(
      tiledBlock(
        1,
        chunk,
        cin * 4,
        cout * 4,
        0,
        0,
        {
          vecs,
          outer: 1,
          inner: cin,
          innerA: 4,
          innerB: cout * 4,
          outerA: 0,
          outerB: 0,
          splat: (t) => t * cin * 4,
          vec: (v) => 16 * v,
          dst: (t, v) => t * cout * 4 + 16 * v,
          accumulate: false,
        },
        CONV_TILE.positions,
      ),
    );
    return fns.length - 1;
  };
  const vecsTotal = cout / 4;
  const full = Math.floor(vecsTotal / CONV_TILE.vecs);
  const rest = vecsTotal - full * CONV_TILE.vecs;
  const fullFn = full > 0 ? gemm(CONV_TILE.vecs) : -1;
  const restFn = rest > 0 ? gemm(rest) : -1;

  // outT(m, y, bias): Y = A^T M A + bias (relu'd) for one tile, four channels at a time.
  const outT = new FunctionBuilder([I32, I32, I32]);
  fns.push(outT);
  const outFn = fns.length - 1;
  {
    const [M, Y, BIAS] = [0, 1, 2];
    const left = outT.local(I32);
    const m = Array.from({ length: 6 }, () => outT.local(V128));
    const [c2, c4, c8, zero] = [outT.local(V128), outT.local(V128), outT.local(V128), outT.local(V128)];
    const [s12, d12, s34, d34, b] = [
      outT.local(V128),
      outT.local(V128),
      outT.local(V128),
      outT.local(V128),
      outT.local(V128),
    ];
    // With `pool`: a pair of rows' outputs, maxed as they come.
    const row = pool ? Array.from({ length: 4 }, () => outT.local(V128)) : [];
    outT.f32x4Const(2).set(c2).f32x4Const(4).set(c4).f32x4Const(8).set(c8).f32x4Const(0).set(zero);
    const slot = (r: number, col: number): number => (r * 6 + col) * mStride;
    const at = (put: (k: number, value: () => void) => void): void => {
      const X = (k: number): number => m[k] as number;
      outT.get(X(1)).get(X(2)).f32x4Add().set(s12);
      outT.get(X(1)).get(X(2)).f32x4Sub().set(d12);
      outT.get(X(3)).get(X(4)).f32x4Add().set(s34);
      outT.get(X(3)).get(X(4)).f32x4Sub().set(d34);
      // o0 = m0 + (m1 + m2) + (m3 + m4); o1 = (m1 - m2) + 2 (m3 - m4)
      put(0, () => outT.get(X(0)).get(s12).f32x4Add().get(s34).f32x4Add());
      put(1, () => outT.get(d12).get(d34).get(c2).f32x4Mul().f32x4Add());
      // o2 = (m1 + m2) + 4 (m3 + m4); o3 = (m1 - m2) + 8 (m3 - m4) + m5
      put(2, () => outT.get(s12).get(s34).get(c4).f32x4Mul().f32x4Add());
      put(3, () => outT.get(d12).get(d34).get(c8).f32x4Mul().f32x4Add().get(X(5)).f32x4Add());
    };
    outT.i32(cout / 4).set(left);
    outT.loop(() => {
      for (let col = 0; col < 6; col++) {
        for (let r = 0; r < 6; r++)
          outT
            .get(M)
            .load(slot(r, col))
            .set(m[r] as number);
        at((k, value) => {
          outT.get(M);
          value();
          outT.store(slot(k, col));
        });
      }
      outT.get(BIAS).load().set(b);
      for (let r = 0; r < 4; r++) {
        for (let col = 0; col < 6; col++)
          outT
            .get(M)
            .load(slot(r, col))
            .set(m[col] as number);
        at((k, value) => {
          if (!pool) outT.get(Y);
          value();
          outT.get(b).f32x4Add();
          if (relu) outT.get(zero).f32x4Max();
          if (!pool) outT.store((r * ow + k) * cout * 4);
          else if (r % 2 === 0) outT.set(row[k] as number);
          else
            outT
              .get(row[k] as number)
              .f32x4Max()
              .set(row[k] as number);
        });
        if (pool && r % 2 === 1)
          for (let k = 0; k < 4; k += 2)
            outT
              .get(Y)
              .get(row[k] as number)
              .get(row[k + 1] as number)
              .f32x4Max()
              .store((((r - 1) / 2) * (ow / 2) + k / 2) * cout * 4);
      }
      outT.inc(M, 16).inc(Y, 16).inc(BIAS, 16);
      outT.inc(left, -1).get(left).brIf(0);
    });
  }

  // main(tiles, u, bias, scratch, chunks)
  {
    const [TILES, U, BIAS, SCR, CHUNKS] = [0, 1, 2, 3, 4];
    const p = main.local(I32);
    const vp = main.local(I32);
    const up = main.local(I32);
    const mp = main.local(I32);
    const bp = main.local(I32);
    const dp = main.local(I32);
    const k = main.local(I32);
    const xi = main.local(I32);
    const blocks = main.local(I32);
    main.loop(() => {
      // Input transforms.
      main.get(TILES).set(p).get(SCR).set(vp).i32(chunk).set(k);
      main.loop(() => {
        loadI32(main.get(p), 0).get(vp).call(1);
        main.inc(p, 8).inc(vp, cin * 4);
        main.inc(k, -1).get(k).brIf(0);
      });
      // The 36 products.
      main.get(SCR).set(vp).get(U).set(up).get(SCR).i32(vBytes).add().set(mp).i32(36).set(xi);
      main.loop(() => {
        main.get(up).set(bp).get(mp).set(dp);
        if (full > 0) {
          main.i32(full).set(blocks);
          main.loop(() => {
            main.get(vp).get(bp).get(dp).call(fullFn);
            main.inc(bp, 16 * CONV_TILE.vecs).inc(dp, 16 * CONV_TILE.vecs);
            main.inc(blocks, -1).get(blocks).brIf(0);
          });
        }
        if (rest > 0) main.get(vp).get(bp).get(dp).call(restFn);
        main
          .inc(vp, vStride)
          .inc(up, cin * cout * 4)
          .inc(mp, mStride);
        main.inc(xi, -1).get(xi).brIf(0);
      });
      // Output transforms.
      main.get(TILES).set(p).get(SCR).i32(vBytes).add().set(mp).i32(chunk).set(k);
      main.loop(() => {
        main.get(mp);
        loadI32(main.get(p), 4).get(BIAS).call(outFn);
        main.inc(p, 8).inc(mp, cout * 4);
        main.inc(k, -1).get(k).brIf(0);
      });
      main.inc(TILES, chunk * 8);
      main.inc(CHUNKS, -1).get(CHUNKS).brIf(0);
    });
  }
  return fns;
}

/**
 * Bytes from one of V's (or M's) 36 slabs to the next: a chunk's values plus a cache line, so that
 * the 36 values of one tile and channel vector (a power-of-two stride apart otherwise) fall in
 * different L1 sets.
 */
function slabBytes(chunk: number, channels: number): number {
  return chunk * channels * 4 + 64;
}

/** Floats of scratch (V and M) the module for (cin, cout) needs. */
function scratchFloats(cin: number, cout: number, chunk: number): number {
  return (36 * (slabBytes(chunk, cin) + slabBytes(chunk, cout))) / 4;
}

function runWinograd(
  simd: SimdRuntime,
  args: KernelArgs,
  x: tf.TensorInfo,
  u: tf.TensorInfo,
  filterShape: [number, number, number, number],
  bias: tf.TensorInfo,
  relu: boolean,
  pool: boolean,
): tf.TensorInfo | undefined {
  const attrs = args.attrs ?? {};
  const info = conv2dInfo(shape4(x, 'Winograd x'), filterShape, { strides: 1, pad: attrs.pad });
  const {
    batchSize: n,
    inHeight: h,
    inWidth: w,
    inChannels: cin,
    outChannels: cout,
    outHeight: oh,
    outWidth: ow,
  } = info;
  if (!winogradFits(cin, cout, oh, ow) || info.filterHeight !== 3 || info.filterWidth !== 3) return undefined;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const hp = oh + 2;
  const wp = ow + 2;
  const backend = asWasm(args.backend);
  const out = backend.makeOutput(pool ? [n, oh / 2, ow / 2, cout] : [n, oh, ow, cout], 'float32');
  if (n === 0) return out;
  const needsPad = hp !== h || wp !== w || padTop !== 0 || padLeft !== 0;
  const padded = needsPad ? backend.makeOutput([n, hp, wp, cin], 'float32') : undefined;
  const chunk = WINOGRAD_CHUNK;
  const tilesPerImage = (oh / 4) * (ow / 4);
  const tiles = n * tilesPerImage;
  const chunks = Math.ceil(tiles / chunk);
  const scratch = backend.makeOutput([scratchFloats(cin, cout, chunk)], 'float32');
  const list = backend.makeOutput([chunks * chunk * 2], 'int32');
  // Views only after the last allocation (the heap may grow).
  if (padded !== undefined)
    padInput(backend, x, padded, { n, h, w, cin, oh, ow, sh: 1, sw: 1, kh: 3, kw: 3, padTop, padLeft }, hp, wp);
  const xBase = heapOffset(backend, padded ?? x);
  const yBase = heapOffset(backend, out);
  const addrs = backend.typedArrayFromHeap(list) as Int32Array;
  let t = 0;
  for (let b = 0; b < n; b++)
    for (let ty = 0; ty < oh; ty += 4)
      for (let tx = 0; tx < ow; tx += 4) {
        addrs[2 * t] = xBase + ((b * hp + ty) * wp + tx) * cin * 4;
        addrs[2 * t + 1] = pool
          ? yBase + ((b * (oh / 2) + ty / 2) * (ow / 2) + tx / 2) * cout * 4
          : yBase + ((b * oh + ty) * ow + tx) * cout * 4;
        t++;
      }
  // Fill the last chunk with the last tile (the same values computed and written again).
  for (; t < chunks * chunk; t++) {
    addrs[2 * t] = addrs[2 * (tiles - 1)] as number;
    addrs[2 * t + 1] = addrs[2 * (tiles - 1) + 1] as number;
  }
  const g: WinogradGeometry = { cin, cout, wp, ow, relu, pool };
  const run = simd.kernel(`Winograd ${JSON.stringify({ ...g, chunk })}`, () => buildWinogradConv(g, chunk));
  run(
    heapOffset(backend, list),
    heapOffset(backend, u),
    heapOffset(backend, bias),
    heapOffset(backend, scratch),
    chunks,
  );
  dispose(backend, scratch, list);
  if (padded !== undefined) dispose(backend, padded);
  return out;
}

/**
 * TriageWinogradConv2D: inputs x [n, h, w, cin], u (winogradFilter of filter) [36, cin, cout],
 * filter [3, 3, cin, cout], bias [cout]; attrs pad ('same' | 'valid'), relu (boolean), pool
 * (boolean). y = conv(x, filter) + bias, relu'd, and with `pool` max-pooled 2x2 / stride 2 (the
 * output then [n, oh / 2, ow / 2, cout]). Without wasm SIMD, or for a geometry the kernel does not
 * take: the stock FusedConv2D (and MaxPool).
 */
export function winogradConv2dWasm(args: KernelArgs): tf.TensorInfo {
  const x = input(args.inputs, 'x', WINOGRAD_KERNEL);
  const u = input(args.inputs, 'u', WINOGRAD_KERNEL);
  const filter = input(args.inputs, 'filter', WINOGRAD_KERNEL);
  const bias = input(args.inputs, 'bias', WINOGRAD_KERNEL);
  const relu = args.attrs?.relu === true;
  const pool = args.attrs?.pool === true;
  const simd = simdRuntime(args.backend);
  const out =
    simd === undefined || x.dtype !== 'float32'
      ? undefined
      : runWinograd(simd, args, x, u, shape4(filter, 'Winograd filter'), bias, relu, pool);
  if (out !== undefined) return out;
  const conv = runKernel(
    'FusedConv2D',
    { x, filter, bias },
    {
      strides: [1, 1],
      pad: args.attrs?.pad,
      dataFormat: 'NHWC',
      dilations: [1, 1],
      dimRoundingMode: undefined,
      activation: relu ? 'relu' : 'linear',
    },
    args.backend,
  );
  if (!pool) return conv;
  const pooled = runKernel('MaxPool', { x: conv }, { filterSize: [2, 2], strides: [2, 2], pad: 'valid' }, args.backend);
  dispose(asWasm(args.backend), conv);
  return pooled;
}

export const winogradConv2dConfig: tf.KernelConfig = {
  kernelName: WINOGRAD_KERNEL,
  backendName: 'wasm',
  kernelFunc: winogradConv2dWasm,
};
