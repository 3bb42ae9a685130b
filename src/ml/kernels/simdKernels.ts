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
 * Compiled modules are cached per geometry. `simdRuntime` returns undefined when the engine has no
 * wasm SIMD or the backend's memory cannot be reached; the callers then use their JS/XNNPACK paths.
 */
import { FunctionBuilder, I32, V128, buildModule } from './wasmAsm';

/** The part of the WebAssembly global used here (lib ES2022 without DOM has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WebAssemblyApi {
  Memory: abstract new (...args: never[]) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
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
}

class Runtime implements SimdRuntime {
  private readonly cache = new Map<string, SimdKernel>();

  constructor(private readonly api: WebAssemblyApi, private readonly memory: WasmMemory, private readonly shared: boolean) {}

  kernel(key: string, build: () => FunctionBuilder | readonly FunctionBuilder[]): SimdKernel {
    let f = this.cache.get(key);
    if (f === undefined) {
      const built = build();
      const fns = Array.isArray(built) ? (built as readonly FunctionBuilder[]) : [built as FunctionBuilder];
      const bytes = buildModule(fns.map((fn, i) => ({ name: i === 0 ? 'run' : `f${i}`, fn })), this.shared);
      const instance = new this.api.Instance(new this.api.Module(bytes), { env: { memory: this.memory } });
      f = instance.exports.run as SimdKernel;
      this.cache.set(key, f);
    }
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
export function buildConv2dBackpropFilter(g: DwGeometry, block: { rows: number; vecs: number } = DW_BLOCK): FunctionBuilder[] {
  const { hp, wp, cin, oh, ow, kh, kw, cout } = g;
  if (cout % 4 !== 0) throw new Error('buildConv2dBackpropFilter needs cout % 4 == 0');
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
      blocks.push(dwBlock(g, rows, Math.min(block.vecs, vecsTotal - v0), (r) => rowOffset(r0 + r), (r, v) => ((r0 + r) * cout + 4 * (v0 + v)) * 4, 16 * v0));
    }
  }
  const main = new FunctionBuilder([I32, I32, I32, I32]);
  const X = 0;
  const DY = 1;
  const DW = 2;
  const N = 3;
  const dyEnd = main.local(I32);
  main.get(DY).get(N).i32(oh * ow * cout * 4).mul().add().set(dyEnd);
  main.loop(() => {
    blocks.forEach((_, i) => main.get(X).get(DY).get(DW).call(i + 1));
    main.inc(X, hp * wp * cin * 4).inc(DY, oh * ow * cout * 4);
    main.get(DY).get(dyEnd).ne().brIf(0);
  });
  return [main, ...blocks];
}

/** One register block of buildConv2dBackpropFilter for one image: (x, dy, dw). */
function dwBlock(g: DwGeometry, rows: number, vecs: number, xOffset: (r: number) => number, dwOffset: (r: number, v: number) => number, dyOffset: number): FunctionBuilder {
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
    fn.get(Q).i32(ow * cout * 4).add().set(rowEnd);
    fn.loop(() => {
      for (let v = 0; v < vecs; v++) fn.get(Q).load(dyOffset + 16 * v).set(d[v] as number);
      for (let r = 0; r < rows; r++) {
        fn.get(P).loadSplat(xOffset(r)).set(a);
        for (let v = 0; v < vecs; v++) fn.get(at(r, v)).get(a).get(d[v] as number).f32x4Mul().f32x4Add().set(at(r, v));
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

  fn.get(DY).get(N).i32(oh * ow * c * 4).mul().add().set(dyEnd);
  fn.loop(() => {
    fn.i32(oh).set(oy);
    fn.loop(() => {
      fn.get(DY).i32(ow * c * 4).add().set(rowEnd);
      fn.loop(() => {
        for (let k = 0; k < c; k += 4) {
          for (let e = 0; e < 4; e++) fn.get(X).load((offs[e] as number) + k * 4).set(v[e] as number);
          fn.get(DY).load(k * 4).set(dv);
          // s0 = v0 > -inf; m = s0 ? v0 : -inf; s_e = v_e > m; m = s_e ? v_e : m.
          fn.get(v[0] as number).f32x4Const(-Infinity).f32x4Gt().set(s[0] as number);
          fn.get(v[0] as number).f32x4Const(-Infinity).get(s[0] as number).bitselect().set(m);
          for (let e = 1; e < 4; e++) {
            fn.get(v[e] as number).get(m).f32x4Gt().set(s[e] as number);
            if (e < 3) fn.get(v[e] as number).get(m).get(s[e] as number).bitselect().set(m);
          }
          // The last element whose s is set is the first maximum.
          fn.get(DX).get(dv).get(s[3] as number).and().store((offs[3] as number) + k * 4);
          fn.get(s[3] as number).set(t);
          for (let e = 2; e >= 0; e--) {
            fn.get(DX).get(dv).get(s[e] as number).and().get(t).andnot().store((offs[e] as number) + k * 4);
            if (e > 0) fn.get(t).get(s[e] as number).or().set(t);
          }
        }
        fn.inc(X, 2 * c * 4).inc(DX, 2 * c * 4).inc(DY, c * 4);
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
