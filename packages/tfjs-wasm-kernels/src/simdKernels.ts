/**
 * WebAssembly SIMD kernels that run in the tfjs wasm backend's own memory.
 *
 * Where XNNPACK has no operator for a training op, composing one from XNNPACK operators costs
 * more than the arithmetic: its fully-connected operator repacks its right-hand operand on every
 * call (~2.2 ns per element, 1.6 ms for the peer CNN's first-layer dy), and im2col + Transpose
 * copies the input three times. These kernels instead read the tensors where they are: a small
 * module, generated for one geometry (every size, stride and offset a constant), imports the
 * backend's memory and is called with the tensors' heap offsets.
 *
 * Compiled modules are cached per geometry, the MAX_MODULES most recently used (a long-lived
 * instance that sees images of many sizes would otherwise keep one per size). `simdRuntime` returns undefined when the engine has no
 * wasm SIMD or the backend's memory cannot be reached; the callers then use their JS/XNNPACK paths.
 */
import { F32, FunctionBuilder, I32, V128, ValType, buildModule } from './wasmAsm';

/** The part of the WebAssembly global used here (lib ES2022 without DOM has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WebAssemblyApi {
  Memory: abstract new (...args: never[]) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (
    module: object,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

function wasmApi(): WebAssemblyApi | undefined {
  return (globalThis as unknown as { WebAssembly?: WebAssemblyApi }).WebAssembly;
}

/** Where the tfjs wasm backend keeps its emscripten module's memory (exported as asm.memory). */
interface MemoryHolder {
  wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown };
}

export type SimdKernel = (...heapOffsets: number[]) => void;

export interface SimdRuntime {
  /**
   * Compiles (once per key) and returns the module's first function, exported as `run`; the
   * others (exported as f1, f2, ...) are for it to call.
   */
  kernel(key: string, build: () => FunctionBuilder | readonly FunctionBuilder[]): SimdKernel;
  /** Compiled modules held now. */
  readonly modules: number;
}

/**
 * Compiled modules kept per backend. A training run or a model uses a few dozen geometries; a
 * module is a few KB of code plus its compiled form, and compiling one takes ~0.1-1 ms.
 */
export const MAX_MODULES = 256;

class Runtime implements SimdRuntime {
  /** Least recently used first (a hit moves its key to the end). */
  private readonly cache = new Map<string, SimdKernel>();

  constructor(
    private readonly api: WebAssemblyApi,
    private readonly memory: WasmMemory,
    private readonly shared: boolean,
  ) {}

  get modules(): number {
    return this.cache.size;
  }

  kernel(key: string, build: () => FunctionBuilder | readonly FunctionBuilder[]): SimdKernel {
    let f = this.cache.get(key);
    if (f !== undefined) {
      this.cache.delete(key);
    } else {
      const built = build();
      const fns = Array.isArray(built) ? (built as readonly FunctionBuilder[]) : [built as FunctionBuilder];
      const bytes = buildModule(
        fns.map((fn, i) => ({ name: i === 0 ? 'run' : `f${i}`, fn })),
        this.shared,
      );
      const instance = new this.api.Instance(new this.api.Module(bytes), { env: { memory: this.memory } });
      f = instance.exports.run as SimdKernel;
      if (this.cache.size >= MAX_MODULES) {
        const oldest = this.cache.keys().next();
        if (oldest.done !== true) this.cache.delete(oldest.value);
      }
    }
    this.cache.set(key, f);
    return f;
  }
}

const runtimes = new WeakMap<object, Runtime | null>();

function simdSupported(api: WebAssemblyApi): boolean {
  const fn = new FunctionBuilder([]);
  const v = fn.local(V128);
  fn.f32x4Const(0).f32x4Const(0).f32x4Add().set(v);
  try {
    return api.validate(buildModule([{ name: 'run', fn }], false));
  } catch {
    return false;
  }
}

let disabled = false;

/** Turns the SIMD kernels off (the kernels then take their JS/XNNPACK paths) or back on: for tests and benches. */
export function setSimdKernelsEnabled(enabled: boolean): void {
  disabled = !enabled;
}

/** The SIMD runtime for a tfjs wasm backend, or undefined if SIMD kernels cannot run there. */
export function simdRuntime(backend: unknown): SimdRuntime | undefined {
  if (disabled || backend == null || typeof backend !== 'object') return undefined;
  const known = runtimes.get(backend);
  if (known !== undefined) return known ?? undefined;
  const api = wasmApi();
  const w = (backend as MemoryHolder).wasm;
  const memory = w?.asm?.memory ?? w?.wasmMemory;
  let rt: Runtime | null = null;
  if (api !== undefined && memory instanceof api.Memory && simdSupported(api)) {
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    rt = new Runtime(api, memory, shared);
  }
  runtimes.set(backend, rt);
  return rt ?? undefined;
}

/** Conv2D weight-gradient geometry on an already padded input (NHWC, dilation 1); the batch size is an argument. */
export interface DwGeometry {
  /** Input height and width including padding. */
  hp: number;
  wp: number;
  cin: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  kh: number;
  kw: number;
  cout: number;
}

/** Rows (filter taps x input channels) and output-channel vectors per register block. */
export const DW_BLOCK: { rows: number; vecs: number } = { rows: 4, vecs: 2 };

/**
 * run(x, dy, dw, n): dw[(i,j,c), o] = sum over b, y, x of xp[b, y*sh+i, x*sw+j, c] * dy[b, y, x, o],
 * for a padded input xp. Needs cout % 4 == 0. dw is accumulated into: zero it first.
 *
 * dw is cut into register blocks of `rows` filter rows x `vecs`*4 output channels, each one small
 * function: load its accumulators from dw, add every output position's outer product (`rows`
 * splats of x times `vecs` vectors of dy), store them back. `run` calls every block for one image
 * (whose x and dy then stay in L1), then the next image. (One function per block, because V8's
 * register allocator spills every accumulator on each loop iteration of a function this large:
 * 2.6 ms instead of 1.4 ms for the peer CNN's second layer.)
 */
export function buildConv2dBackpropFilter(
  g: DwGeometry,
  block: { rows: number; vecs: number } = DW_BLOCK,
): FunctionBuilder[] {
  const { hp, wp, cin, oh, ow, kh, kw, cout } = g;
  if (cout % 4 !== 0) throw new Error('buildConv2dBackpropFilter needs cout % 4 == 0');
  if (cin % block.rows === 0) return loopedConv2dBackpropFilter(g, block);
  const K = kh * kw * cin;
  const rowOffset = (r: number): number => {
    const c = r % cin;
    const j = Math.floor(r / cin) % kw;
    const i = Math.floor(r / (cin * kw));
    return ((i * wp + j) * cin + c) * 4;
  };
  const vecsTotal = cout / 4;
  const blocks: FunctionBuilder[] = [];
  for (let r0 = 0; r0 < K; r0 += block.rows) {
    const rows = Math.min(block.rows, K - r0);
    for (let v0 = 0; v0 < vecsTotal; v0 += block.vecs) {
      blocks.push(
        dwBlock(
          g,
          rows,
          Math.min(block.vecs, vecsTotal - v0),
          (r) => rowOffset(r0 + r),
          (r, v) => ((r0 + r) * cout + 4 * (v0 + v)) * 4,
          16 * v0,
        ),
      );
    }
  }
  // dw accumulates over the images: x and dy advance, dw stays.
  return perImage(blocks, [hp * wp * cin * 4, oh * ow * cout * 4, 0]);
}

/**
 * buildConv2dBackpropFilter when `rows` divides cin: every register block is `rows` consecutive
 * channels of one filter tap, so one function (and one for a narrower last channel block) serves
 * every block, called with the block's x, dy and dw addresses by loops over taps, channel groups
 * and output-channel groups. A module of one function per block (K/rows x cout/(4 vecs): 4,608 for
 * a 3x3x128->128 layer) is megabytes of code that V8 leaves to its baseline compiler and that
 * misses the instruction cache: 2.1 GMAC/s on [32,8,8,128] -> 128 against ~17 for small layers.
 * Looped, CPU ms per call (7 alternating rounds in one process, medians): [32,8,8,128] -> 128
 * 138.1 -> 14.2 (21 GMAC/s), [32,16,16,64] -> 128 41.5 -> 31.6, the smaller layers unchanged.
 */
function loopedConv2dBackpropFilter(g: DwGeometry, block: { rows: number; vecs: number }): FunctionBuilder[] {
  const { hp, wp, cin, oh, ow, kh, kw, cout } = g;
  const rows = block.rows;
  const vecsTotal = cout / 4;
  const full = Math.floor(vecsTotal / block.vecs);
  const rest = vecsTotal - full * block.vecs;
  const fns: FunctionBuilder[] = [];
  const main = new FunctionBuilder([I32, I32, I32, I32]);
  fns.push(main);
  const blockFn = (vecs: number): number => {
    fns.push(
      dwBlock(
        g,
        rows,
        vecs,
        (r) => 4 * r,
        (r, v) => (r * cout + 4 * v) * 4,
        0,
      ),
    );
    return fns.length - 1;
  };
  const fullFn = full > 0 ? blockFn(block.vecs) : -1;
  const restFn = rest > 0 ? blockFn(rest) : -1;
  const [X, DY, DW, N] = [0, 1, 2, 3];
  const xp = main.local(I32);
  const dwp = main.local(I32);
  const yq = main.local(I32);
  const dwq = main.local(I32);
  const groups = main.local(I32);
  const vgs = main.local(I32);
  main.loop(() => {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        main
          .get(X)
          .i32((i * wp + j) * cin * 4)
          .add()
          .set(xp);
        main
          .get(DW)
          .i32((i * kw + j) * cin * cout * 4)
          .add()
          .set(dwp);
        main.i32(cin / rows).set(groups);
        main.loop(() => {
          main.get(DY).set(yq).get(dwp).set(dwq);
          if (full > 0) {
            main.i32(full).set(vgs);
            main.loop(() => {
              main.get(xp).get(yq).get(dwq).call(fullFn);
              main.inc(yq, 16 * block.vecs).inc(dwq, 16 * block.vecs);
              main.inc(vgs, -1).get(vgs).brIf(0);
            });
          }
          if (rest > 0) main.get(xp).get(yq).get(dwq).call(restFn);
          main.inc(xp, 4 * rows).inc(dwp, rows * cout * 4);
          main.inc(groups, -1).get(groups).brIf(0);
        });
      }
    }
    main.inc(X, hp * wp * cin * 4).inc(DY, oh * ow * cout * 4);
    main.inc(N, -1).get(N).brIf(0);
  });
  return fns;
}

/** One register block of buildConv2dBackpropFilter for one image: (x, dy, dw). */
function dwBlock(
  g: DwGeometry,
  rows: number,
  vecs: number,
  xOffset: (r: number) => number,
  dwOffset: (r: number, v: number) => number,
  dyOffset: number,
): FunctionBuilder {
  const { wp, cin, oh, ow, sh, sw, cout } = g;
  const fn = new FunctionBuilder([I32, I32, I32]);
  const P = 0;
  const Q = 1;
  const DW = 2;
  const rowEnd = fn.local(I32);
  const y = fn.local(I32);
  const acc: number[] = [];
  for (let i = 0; i < rows * vecs; i++) acc.push(fn.local(V128));
  const d: number[] = [];
  for (let i = 0; i < vecs; i++) d.push(fn.local(V128));
  const a = fn.local(V128);
  const at = (r: number, v: number): number => acc[r * vecs + v] as number;

  for (let r = 0; r < rows; r++) for (let v = 0; v < vecs; v++) fn.get(DW).load(dwOffset(r, v)).set(at(r, v));
  fn.i32(oh).set(y);
  fn.loop(() => {
    fn.get(Q)
      .i32(ow * cout * 4)
      .add()
      .set(rowEnd);
    fn.loop(() => {
      for (let v = 0; v < vecs; v++)
        fn.get(Q)
          .load(dyOffset + 16 * v)
          .set(d[v] as number);
      for (let r = 0; r < rows; r++) {
        fn.get(P).loadSplat(xOffset(r)).set(a);
        for (let v = 0; v < vecs; v++)
          fn.get(at(r, v))
            .get(a)
            .get(d[v] as number)
            .f32x4Mul()
            .f32x4Add()
            .set(at(r, v));
      }
      fn.inc(P, sw * cin * 4).inc(Q, cout * 4);
      fn.get(Q).get(rowEnd).ne().brIf(0);
    });
    fn.inc(P, (sh * wp - ow * sw) * cin * 4);
    fn.inc(y, -1).get(y).brIf(0);
  });
  for (let r = 0; r < rows; r++) for (let v = 0; v < vecs; v++) fn.get(DW).get(at(r, v)).store(dwOffset(r, v));
  return fn;
}

/** MaxPool 2x2 / stride 2 geometry without padding; c % 4 == 0; the batch size is an argument. */
export interface Pool2x2Geometry {
  h: number;
  w: number;
  c: number;
  oh: number;
  ow: number;
}

/**
 * run(x, dy, dx, n): for every 2x2 window, dy goes to the window's first maximum (strictly greater
 * than all before it in row-major order and than -Infinity, so NaN never wins) and 0 to the other
 * three elements, four channels at a time. Elements outside every window (the last row/column of
 * an odd size) are not written.
 */
export function buildMaxPoolGrad2x2(g: Pool2x2Geometry): FunctionBuilder {
  const { h, w, c, oh, ow } = g;
  if (c % 4 !== 0) throw new Error('buildMaxPoolGrad2x2 needs c % 4 == 0');
  const fn = new FunctionBuilder([I32, I32, I32, I32]);
  const X = 0;
  const DY = 1;
  const DX = 2;
  const N = 3;
  const rowEnd = fn.local(I32);
  const dyEnd = fn.local(I32);
  const oy = fn.local(I32);
  const v = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];
  const s = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];
  const m = fn.local(V128);
  const t = fn.local(V128);
  const dv = fn.local(V128);
  const offs = [0, c * 4, w * c * 4, (w + 1) * c * 4];

  fn.get(DY)
    .get(N)
    .i32(oh * ow * c * 4)
    .mul()
    .add()
    .set(dyEnd);
  fn.loop(() => {
    fn.i32(oh).set(oy);
    fn.loop(() => {
      fn.get(DY)
        .i32(ow * c * 4)
        .add()
        .set(rowEnd);
      fn.loop(() => {
        for (let k = 0; k < c; k += 4) {
          for (let e = 0; e < 4; e++)
            fn.get(X)
              .load((offs[e] as number) + k * 4)
              .set(v[e] as number);
          fn.get(DY)
            .load(k * 4)
            .set(dv);
          // s0 = v0 > -inf; m = s0 ? v0 : -inf; s_e = v_e > m; m = s_e ? v_e : m.
          fn.get(v[0] as number)
            .f32x4Const(-Infinity)
            .f32x4Gt()
            .set(s[0] as number);
          fn.get(v[0] as number)
            .f32x4Const(-Infinity)
            .get(s[0] as number)
            .bitselect()
            .set(m);
          for (let e = 1; e < 4; e++) {
            fn.get(v[e] as number)
              .get(m)
              .f32x4Gt()
              .set(s[e] as number);
            if (e < 3)
              fn.get(v[e] as number)
                .get(m)
                .get(s[e] as number)
                .bitselect()
                .set(m);
          }
          // The last element whose s is set is the first maximum.
          fn.get(DX)
            .get(dv)
            .get(s[3] as number)
            .and()
            .store((offs[3] as number) + k * 4);
          fn.get(s[3] as number).set(t);
          for (let e = 2; e >= 0; e--) {
            fn.get(DX)
              .get(dv)
              .get(s[e] as number)
              .and()
              .get(t)
              .andnot()
              .store((offs[e] as number) + k * 4);
            if (e > 0)
              fn.get(t)
                .get(s[e] as number)
                .or()
                .set(t);
          }
        }
        fn.inc(X, 2 * c * 4)
          .inc(DX, 2 * c * 4)
          .inc(DY, c * 4);
        fn.get(DY).get(rowEnd).ne().brIf(0);
      });
      // To the next pair of input rows.
      fn.inc(X, (2 * w - 2 * ow) * c * 4).inc(DX, (2 * w - 2 * ow) * c * 4);
      fn.inc(oy, -1).get(oy).brIf(0);
    });
    // Past an odd last row.
    fn.inc(X, (h - 2 * oh) * w * c * 4).inc(DX, (h - 2 * oh) * w * c * 4);
    fn.get(DY).get(dyEnd).ne().brIf(0);
  });
  return fn;
}

/** Output positions and channel vectors per register tile of the convolution kernels below. */
export const CONV_TILE: { positions: number; vecs: number } = { positions: 4, vecs: 2 };

/**
 * One register tile: acc[t, v] (+)= sum over the reduction of splat(a + splat(t)) * load(b + vec(v)),
 * stored to D + dst(t, v), where a and b walk from A and B: `inner` steps of innerA / innerB bytes,
 * then outerA / outerB more, `outer` times. With `accumulate` the accumulators start from D, else
 * from zero. The reduction is a loop (unrolled up to 4 steps, fully when short): fully unrolled
 * over a long reduction, V8 hoists the loads and spills, and runs 3x slower.
 */
export interface TileSpec {
  vecs: number;
  outer: number;
  inner: number;
  innerA: number;
  innerB: number;
  outerA: number;
  outerB: number;
  splat(t: number): number;
  vec(v: number): number;
  dst(t: number, v: number): number;
  accumulate: boolean;
  /** Fused epilogue: accumulators start from this vector (an offset from a 4th argument, the bias); without `accumulate`. */
  bias?: (v: number) => number;
  /** Fused epilogue: each vector is clamped to [lower, upper] when it is stored (relu: lower 0). */
  lower?: number;
  upper?: number;
}

/**
 * A function (A, B, D) that runs one channel block over one image: `rows` rows of `cols`
 * positions, tiles of `positions` positions (the last tile of a row may be shorter); per
 * position A advances by aPos and D by dPos bytes, after each row by aRow and dRow more.
 */
export function tiledBlock(
  rows: number,
  cols: number,
  aPos: number,
  dPos: number,
  aRow: number,
  dRow: number,
  tile: TileSpec,
  positions: number,
): FunctionBuilder {
  const { bias, lower, upper } = tile;
  if (bias !== undefined && tile.accumulate) throw new Error('tiledBlock: a bias epilogue needs accumulate false');
  const fn = new FunctionBuilder(bias === undefined ? [I32, I32, I32] : [I32, I32, I32, I32]);
  const A = 0;
  const B = 1;
  const D = 2;
  const BIAS = 3;
  const rowsLeft = fn.local(I32);
  const tilesLeft = fn.local(I32);
  const ra = fn.local(I32);
  const rb = fn.local(I32);
  const rEnd = fn.local(I32);
  const outerLeft = fn.local(I32);
  const acc: number[] = [];
  for (let i = 0; i < positions * tile.vecs; i++) acc.push(fn.local(V128));
  const w: number[] = [];
  for (let i = 0; i < tile.vecs; i++) w.push(fn.local(V128));
  const a = fn.local(V128);
  const unroll = tile.inner <= 8 ? tile.inner : 1;
  const emit = (T: number): void => {
    const at = (t: number, v: number): number => acc[t * tile.vecs + v] as number;
    for (let t = 0; t < T; t++) {
      for (let v = 0; v < tile.vecs; v++) {
        if (tile.accumulate) fn.get(D).load(tile.dst(t, v)).set(at(t, v));
        else if (bias === undefined) fn.f32x4Const(0).set(at(t, v));
        else if (t === 0) fn.get(BIAS).load(bias(v)).set(at(t, v));
        else fn.get(at(0, v)).set(at(t, v));
      }
    }
    const steps = (): void => {
      for (let u = 0; u < unroll; u++) {
        for (let v = 0; v < tile.vecs; v++)
          fn.get(rb)
            .load(u * tile.innerB + tile.vec(v))
            .set(w[v] as number);
        for (let t = 0; t < T; t++) {
          fn.get(ra)
            .loadSplat(u * tile.innerA + tile.splat(t))
            .set(a);
          for (let v = 0; v < tile.vecs; v++)
            fn.get(at(t, v))
              .get(a)
              .get(w[v] as number)
              .f32x4Mul()
              .f32x4Add()
              .set(at(t, v));
        }
      }
      fn.inc(ra, unroll * tile.innerA).inc(rb, unroll * tile.innerB);
    };
    const innerLoop = (): void => {
      if (unroll === tile.inner) {
        steps();
        return;
      }
      fn.get(ra)
        .i32(tile.inner * tile.innerA)
        .add()
        .set(rEnd);
      fn.loop(() => {
        steps();
        fn.get(ra).get(rEnd).ne().brIf(0);
      });
    };
    fn.get(A).set(ra).get(B).set(rb);
    if (tile.outer === 1) innerLoop();
    else {
      fn.i32(tile.outer).set(outerLeft);
      fn.loop(() => {
        innerLoop();
        fn.inc(ra, tile.outerA).inc(rb, tile.outerB);
        fn.inc(outerLeft, -1).get(outerLeft).brIf(0);
      });
    }
    for (let t = 0; t < T; t++) {
      for (let v = 0; v < tile.vecs; v++) {
        fn.get(D).get(at(t, v));
        if (lower !== undefined) fn.f32x4Const(lower).f32x4Max();
        if (upper !== undefined) fn.f32x4Const(upper).f32x4Min();
        fn.store(tile.dst(t, v));
      }
    }
  };
  const full = Math.floor(cols / positions);
  const rest = cols - full * positions;
  fn.i32(rows).set(rowsLeft);
  fn.loop(() => {
    if (full > 0) {
      fn.i32(full).set(tilesLeft);
      fn.loop(() => {
        emit(positions);
        fn.inc(A, positions * aPos).inc(D, positions * dPos);
        fn.inc(tilesLeft, -1).get(tilesLeft).brIf(0);
      });
    }
    if (rest > 0) {
      emit(rest);
      fn.inc(A, rest * aPos).inc(D, rest * dPos);
    }
    fn.inc(A, aRow).inc(D, dRow);
    fn.inc(rowsLeft, -1).get(rowsLeft).brIf(0);
  });
  return fn;
}

/**
 * run(a, b, d, [bias,] n): calls every block (a, b, d[, bias]) for each of the n > 0 images, then
 * advances each pointer by its per-image byte stride (0: the same memory for every image).
 */
function perImage(blocks: readonly FunctionBuilder[], strides: readonly number[]): FunctionBuilder[] {
  const main = new FunctionBuilder([...strides.map((): ValType => I32), I32]);
  const N = strides.length;
  main.loop(() => {
    blocks.forEach((_, i) => {
      strides.forEach((_stride, arg) => main.get(arg));
      main.call(i + 1);
    });
    strides.forEach((stride, arg) => {
      if (stride !== 0) main.inc(arg, stride);
    });
    main.inc(N, -1).get(N).brIf(0);
  });
  return [main, ...blocks];
}

/**
 * What buildConv2d fuses into its convolution: with `bias`, the accumulators start from the bias
 * vector (run then takes its offset as a 4th argument, before n); `lower` / `upper` clamp every
 * stored vector (relu: lower 0; relu6: lower 0, upper 6).
 */
export interface ConvEpilogue {
  bias: boolean;
  lower?: number;
  upper?: number;
}

/**
 * run(x, w, y, [bias,] n): y[b, p, q, o] = sum over i, j, c of xp[b, p*sh+i, q*sw+j, c] * w[i, j, c, o]
 * (+ bias[o], clamped: see ConvEpilogue), on an already padded input xp [n, hp, wp, cin]; needs
 * cout % 4 == 0. One function per block of `vecs` output-channel vectors; each tile of `positions`
 * output positions x those channels sums its kh*kw*cin products in registers and is stored once.
 */
export function buildConv2d(
  g: DwGeometry,
  tile: { positions: number; vecs: number } = CONV_TILE,
  epilogue: ConvEpilogue = { bias: false },
): FunctionBuilder[] {
  const { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout } = g;
  if (cout % 4 !== 0) throw new Error('buildConv2d needs cout % 4 == 0');
  const aPos = sw * cin * 4;
  const blocks: FunctionBuilder[] = [];
  for (let v0 = 0; v0 < cout / 4; v0 += tile.vecs) {
    const vecs = Math.min(tile.vecs, cout / 4 - v0);
    blocks.push(
      tiledBlock(
        oh,
        ow,
        aPos,
        cout * 4,
        (sh * wp - ow * sw) * cin * 4,
        0,
        {
          vecs,
          // Over filter rows i, then the kw*cin values of a row (contiguous in x and in w).
          outer: kh,
          inner: kw * cin,
          innerA: 4,
          innerB: cout * 4,
          outerA: (wp - kw) * cin * 4,
          outerB: 0,
          splat: (t) => t * aPos,
          vec: (v) => 4 * (v0 + v) * 4,
          dst: (t, v) => (t * cout + 4 * (v0 + v)) * 4,
          accumulate: false,
          ...(epilogue.bias ? { bias: (v: number) => 4 * (v0 + v) * 4 } : {}),
          lower: epilogue.lower,
          upper: epilogue.upper,
        },
        tile.positions,
      ),
    );
  }
  const strides = [hp * wp * cin * 4, 0, oh * ow * cout * 4];
  return perImage(blocks, epilogue.bias ? [...strides, 0] : strides);
}

/**
 * run(dy, wt, dxp, n): dxp[b, y*sh+i, x*sw+j, c] += sum over o of dy[b, y, x, o] * wt[i, j, o, c]
 * for every dy position and filter tap, with wt [kh, kw, cout, cin] the filter with its channel
 * axes swapped and dxp [n, hp, wp, cin] the input gradient over the padded input (zero it first;
 * crop it afterwards if the conv pads). Needs cin % 4 == 0. A scatter: every product lands on a
 * real input position, where XNNPACK's convolution over a zero-padded dy would also multiply the
 * padding. One function per tap and block of `vecs` input-channel vectors; each tile adds the
 * cout products of `positions` dy positions into registers loaded from and stored back to dxp.
 */
export function buildConv2dBackpropInput(
  g: DwGeometry,
  tile: { positions: number; vecs: number } = CONV_TILE,
): FunctionBuilder[] {
  const { hp, wp, cin, oh, ow, sh, sw, kh, kw, cout } = g;
  if (cin % 4 !== 0) throw new Error('buildConv2dBackpropInput needs cin % 4 == 0');
  const dPos = sw * cin * 4;
  const blocks: FunctionBuilder[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      for (let c0 = 0; c0 < cin / 4; c0 += tile.vecs) {
        const vecs = Math.min(tile.vecs, cin / 4 - c0);
        blocks.push(
          tiledBlock(
            oh,
            ow,
            cout * 4,
            dPos,
            0,
            (sh * wp - ow * sw) * cin * 4,
            {
              vecs,
              outer: 1,
              inner: cout,
              innerA: 4,
              innerB: cin * 4,
              outerA: 0,
              outerB: 0,
              splat: (t) => t * cout * 4,
              vec: (v) => ((i * kw + j) * cout * cin + 4 * (c0 + v)) * 4,
              dst: (t, v) => ((i * wp + j) * cin + 4 * (c0 + v)) * 4 + t * dPos,
              accumulate: true,
            },
            tile.positions,
          ),
        );
      }
    }
  }
  return perImage(blocks, [oh * ow * cout * 4, 0, hp * wp * cin * 4]);
}

/** Widest channel count buildBiasAdd unrolls a row over. */
export const BIAS_ADD_MAX_CHANNELS = 256;

/** run(x, b, out, rows): out[r, k] = x[r, k] + b[k] for rows of c values; c % 4 == 0, rows > 0. */
export function buildBiasAdd(c: number): FunctionBuilder {
  if (c % 4 !== 0 || c <= 0 || c > BIAS_ADD_MAX_CHANNELS)
    throw new Error(`buildBiasAdd needs 0 < c <= ${BIAS_ADD_MAX_CHANNELS}, c % 4 == 0`);
  const fn = new FunctionBuilder([I32, I32, I32, I32]);
  const X = 0;
  const B = 1;
  const O = 2;
  const N = 3;
  fn.loop(() => {
    for (let k = 0; k < c; k += 4)
      fn.get(O)
        .get(X)
        .load(4 * k)
        .get(B)
        .load(4 * k)
        .f32x4Add()
        .store(4 * k);
    fn.inc(X, c * 4).inc(O, c * 4);
    fn.inc(N, -1).get(N).brIf(0);
  });
  return fn;
}

/** A matrix product's geometry: C [m, n] = A' [m, k] B [k, n], A' = A [m, k], or A^T for A [k, m] when transposeA. */
export interface MatMulGeometry {
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
}

/**
 * run(a, b, c, blocks): C = A' B for one product (n % 4 == 0), in register tiles of 4 rows of C x
 * 8 columns (as the convolutions: a looped reduction over k). One function computes a column
 * block of 8 (and one the last, narrower block); `run` calls it for each block with b and c
 * advanced by the block's width, so a wide product is not a wide module.
 */
export function buildMatMul(
  g: MatMulGeometry,
  tile: { positions: number; vecs: number } = CONV_TILE,
): FunctionBuilder[] {
  const { m, k, n, transposeA } = g;
  if (n % 4 !== 0 || m <= 0 || k <= 0) throw new Error('buildMatMul needs n % 4 == 0 and m, k > 0');
  const aPos = transposeA ? 4 : k * 4;
  const innerA = transposeA ? m * 4 : 4;
  const block = (vecs: number): FunctionBuilder =>
    tiledBlock(
      1,
      m,
      aPos,
      n * 4,
      0,
      0,
      {
        vecs,
        outer: 1,
        inner: k,
        innerA,
        innerB: n * 4,
        outerA: 0,
        outerB: 0,
        splat: (t) => t * aPos,
        vec: (v) => 16 * v,
        dst: (t, v) => t * n * 4 + 16 * v,
        accumulate: false,
      },
      tile.positions,
    );
  const vecsTotal = n / 4;
  const full = Math.floor(vecsTotal / tile.vecs);
  const rest = vecsTotal - full * tile.vecs;
  const fns: FunctionBuilder[] = [];
  const main = new FunctionBuilder([I32, I32, I32, I32]);
  const A = 0;
  const B = 1;
  const C = 2;
  const left = 3;
  fns.push(main);
  if (full > 0) {
    fns.push(block(tile.vecs));
    main.i32(full).set(left);
    main.loop(() => {
      main.get(A).get(B).get(C).call(1);
      main.inc(B, 16 * tile.vecs).inc(C, 16 * tile.vecs);
      main.inc(left, -1).get(left).brIf(0);
    });
  }
  if (rest > 0) {
    fns.push(block(rest));
    main
      .get(A)
      .get(B)
      .get(C)
      .call(fns.length - 1);
  }
  return fns;
}

/**
 * run(value, m, v, g, newValue, newM, newV, bytes, beta1, beta2, 1-beta1, 1-beta2, correction1,
 * correction2, epsilon, -learningRate): tfjs's Adam update (optimizer.ts adamUpdate) four floats at
 * a time over `bytes` (> 0, a multiple of 16) of each array, every operation in float32 in the
 * order tfjs's kernels run them, so the result has the same bits.
 */
export function buildAdamUpdate(): FunctionBuilder {
  const fn = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32]);
  const [VALUE, M, V, G, W2, M2, V2, BYTES] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [b1, b2, c1, c2, k1, k2, eps, step] = [8, 9, 10, 11, 12, 13, 14, 15].map((param) => {
    const l = fn.local(V128);
    fn.get(param).f32x4Splat().set(l);
    return l;
  }) as [number, number, number, number, number, number, number, number];
  const p = fn.local(I32);
  const gi = fn.local(V128);
  const mi = fn.local(V128);
  const vi = fn.local(V128);
  const at = (base: number): FunctionBuilder => fn.get(base).get(p).add();
  fn.i32(0).set(p);
  fn.loop(() => {
    at(G).load().set(gi);
    // m' = m*b1 + g*c1
    at(M).load().get(b1).f32x4Mul().get(gi).get(c1).f32x4Mul().f32x4Add().set(mi);
    at(M2).get(mi).store();
    // v' = v*b2 + (g*g)*c2
    at(V).load().get(b2).f32x4Mul().get(gi).get(gi).f32x4Mul().get(c2).f32x4Mul().f32x4Add().set(vi);
    at(V2).get(vi).store();
    // w' = ((m'/k1) / (sqrt(v'/k2) + eps)) * step + w
    at(W2);
    fn.get(mi).get(k1).f32x4Div();
    fn.get(vi).get(k2).f32x4Div().f32x4Sqrt().get(eps).f32x4Add();
    fn.f32x4Div().get(step).f32x4Mul();
    at(VALUE).load().f32x4Add().store();
    fn.inc(p, 16).get(p).get(BYTES).ne().brIf(0);
  });
  return fn;
}

/**
 * run(dy, x, dx, bytes): dx = dy * s with s = 1 where x > 0, NaN where x is NaN, else 0: tfjs's
 * Relu gradient mul(dy, cast(step(x), 'float32')) in one pass, with the same bits (dy * 0 keeps
 * its sign and makes NaN of an infinite dy). `bytes` > 0, a multiple of 16.
 */
export function buildReluGrad(): FunctionBuilder {
  const fn = new FunctionBuilder([I32, I32, I32, I32]);
  const [DY, X, DX, BYTES] = [0, 1, 2, 3];
  const p = fn.local(I32);
  const xv = fn.local(V128);
  fn.i32(0).set(p);
  fn.loop(() => {
    fn.get(X).get(p).add().load().set(xv);
    fn.get(DX).get(p).add();
    fn.get(DY).get(p).add().load();
    fn.get(xv).f32x4Const(0).f32x4Gt().f32x4Const(1).and();
    fn.get(xv).get(xv).f32x4Ne().get(xv).and().or();
    fn.f32x4Mul().store();
    fn.inc(p, 16).get(p).get(BYTES).ne().brIf(0);
  });
  return fn;
}

/** Widest channel count the batch-norm kernels below unroll a row over. */
export const BN_MAX_CHANNELS = 1024;

/** Rows per chunk of buildBnSums: about 16 KB of x per chunk (L1), at most 128 rows. */
export function bnChunkRows(c: number): number {
  return Math.max(4, Math.min(128, Math.floor(4096 / c)));
}

/**
 * run(x, dy, k, out, chunks): per-channel sums over `chunks` chunks of bnChunkRows(c) rows of c
 * values (c % 4 == 0), one partial per chunk, in float32 (the caller adds the partials in float64):
 * with u = x - k (k a per-channel shift: a value near the mean keeps the sums of squares from
 * cancelling), chunk j writes out[j, 0, :] = sum(a) and out[j, 1, :] = sum(a * u), where a = u
 * (statistics: sum(x - k), sum((x - k)^2)) or, with `grad`, a = dy (the batch-norm gradient:
 * sum(dy), sum(dy * (x - mean))). Without `grad` the dy argument is not read. One function per
 * block of up to 4 channel vectors (8 accumulators) runs over a chunk's rows; `run` calls every
 * block per chunk.
 */
export function buildBnSums(c: number, grad: boolean): FunctionBuilder[] {
  if (c % 4 !== 0 || c <= 0 || c > BN_MAX_CHANNELS)
    throw new Error(`buildBnSums needs 0 < c <= ${BN_MAX_CHANNELS}, c % 4 == 0`);
  const rows = bnChunkRows(c);
  const blocks: FunctionBuilder[] = [];
  for (let v0 = 0; v0 < c / 4; v0 += 4) {
    const vecs = Math.min(4, c / 4 - v0);
    const fn = new FunctionBuilder([I32, I32, I32, I32]);
    const [X, DY, K, OUT] = [0, 1, 2, 3];
    const left = fn.local(I32);
    const k: number[] = [];
    const s: number[] = [];
    const s2: number[] = [];
    for (let v = 0; v < vecs; v++) {
      k.push(fn.local(V128));
      s.push(fn.local(V128));
      s2.push(fn.local(V128));
    }
    const u = fn.local(V128);
    const a = fn.local(V128);
    for (let v = 0; v < vecs; v++) {
      fn.get(K)
        .load(16 * (v0 + v))
        .set(k[v] as number);
      fn.f32x4Const(0).set(s[v] as number);
      fn.f32x4Const(0).set(s2[v] as number);
    }
    fn.i32(rows).set(left);
    fn.loop(() => {
      for (let v = 0; v < vecs; v++) {
        fn.get(X)
          .load(16 * (v0 + v))
          .get(k[v] as number)
          .f32x4Sub()
          .set(u);
        if (grad)
          fn.get(DY)
            .load(16 * (v0 + v))
            .set(a);
        const av = grad ? a : u;
        fn.get(s[v] as number)
          .get(av)
          .f32x4Add()
          .set(s[v] as number);
        fn.get(s2[v] as number)
          .get(av)
          .get(u)
          .f32x4Mul()
          .f32x4Add()
          .set(s2[v] as number);
      }
      fn.inc(X, c * 4);
      if (grad) fn.inc(DY, c * 4);
      fn.inc(left, -1).get(left).brIf(0);
    });
    for (let v = 0; v < vecs; v++) {
      fn.get(OUT)
        .get(s[v] as number)
        .store(16 * (v0 + v));
      fn.get(OUT)
        .get(s2[v] as number)
        .store(4 * c + 16 * (v0 + v));
    }
    blocks.push(fn);
  }
  return perImage(blocks, [rows * c * 4, grad ? rows * c * 4 : 0, 0, 2 * c * 4]);
}

/**
 * run(x, dy, coef, out, rows): out = p * x + q (+ r * dy with `grad`) per channel, for `rows` > 0
 * rows of c values (c % 4 == 0), with coef = [p (c), q (c), r (c)]: the batch norm's
 * y = scale * x + shift, and its dx = a * dy + b * x + d. Without `grad` dy is not read.
 */
export function buildBnApply(c: number, grad: boolean): FunctionBuilder {
  if (c % 4 !== 0 || c <= 0 || c > BN_MAX_CHANNELS)
    throw new Error(`buildBnApply needs 0 < c <= ${BN_MAX_CHANNELS}, c % 4 == 0`);
  const fn = new FunctionBuilder([I32, I32, I32, I32, I32]);
  const [X, DY, COEF, OUT, N] = [0, 1, 2, 3, 4];
  fn.loop(() => {
    for (let v = 0; v < c / 4; v++) {
      fn.get(OUT);
      fn.get(X)
        .load(16 * v)
        .get(COEF)
        .load(16 * v)
        .f32x4Mul()
        .get(COEF)
        .load(4 * c + 16 * v)
        .f32x4Add();
      if (grad)
        fn.get(DY)
          .load(16 * v)
          .get(COEF)
          .load(8 * c + 16 * v)
          .f32x4Mul()
          .f32x4Add();
      fn.store(16 * v);
    }
    fn.inc(X, c * 4).inc(OUT, c * 4);
    if (grad) fn.inc(DY, c * 4);
    fn.inc(N, -1).get(N).brIf(0);
  });
  return fn;
}

/**
 * run(x, y, n): 2x2 / stride 2 max pooling without padding, four channels at a time (c % 4 == 0):
 * each output is the largest of its window's values that are greater than -Infinity, and
 * -Infinity when there is none (NaN never wins), as tfjs's cpu backend computes it. The last
 * row/column of an odd size is not read.
 */
export function buildMaxPool2x2(g: Pool2x2Geometry): FunctionBuilder {
  const { h, w, c, oh, ow } = g;
  if (c % 4 !== 0) throw new Error('buildMaxPool2x2 needs c % 4 == 0');
  const fn = new FunctionBuilder([I32, I32, I32]);
  const [X, Y, N] = [0, 1, 2];
  const rowEnd = fn.local(I32);
  const oy = fn.local(I32);
  const v = fn.local(V128);
  const m = fn.local(V128);
  const offs = [0, c * 4, w * c * 4, (w + 1) * c * 4];
  fn.loop(() => {
    fn.i32(oh).set(oy);
    fn.loop(() => {
      fn.get(Y)
        .i32(ow * c * 4)
        .add()
        .set(rowEnd);
      fn.loop(() => {
        for (let k = 0; k < c; k += 4) {
          fn.f32x4Const(-Infinity).set(m);
          for (const off of offs) {
            fn.get(X)
              .load(off + k * 4)
              .set(v);
            fn.get(v).get(m).get(v).get(m).f32x4Gt().bitselect().set(m);
          }
          fn.get(Y)
            .get(m)
            .store(k * 4);
        }
        fn.inc(X, 2 * c * 4).inc(Y, c * 4);
        fn.get(Y).get(rowEnd).ne().brIf(0);
      });
      fn.inc(X, (2 * w - 2 * ow) * c * 4);
      fn.inc(oy, -1).get(oy).brIf(0);
    });
    fn.inc(X, (h - 2 * oh) * w * c * 4);
    fn.inc(N, -1).get(N).brIf(0);
  });
  return fn;
}
