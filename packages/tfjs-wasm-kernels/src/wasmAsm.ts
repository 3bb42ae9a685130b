/**
 * A minimal WebAssembly (with SIMD) binary writer, for kernels generated at run time.
 *
 * The project's SIMD kernels (simdKernels.ts) are small loops specialised to one tensor geometry:
 * every size, stride and offset is a constant in the code. They are written here as instruction
 * sequences and compiled by the JS engine into a module that imports the tfjs wasm backend's own
 * memory, so they read and write tensors in place, by their heap offsets. Only what those kernels
 * use is encoded: i32 arithmetic, i32/f32/v128 locals, block/loop/br_if, calls, and a few v128
 * instructions.
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

function u32(n: number, out: number[]): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a u32: ${n}`);
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

function s32(n: number, out: number[]): void {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`not an i32: ${n}`);
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function name(s: string, out: number[]): void {
  const bytes = Buffer.from(s, 'utf8');
  u32(bytes.length, out);
  for (const b of bytes) out.push(b);
}

/** SIMD opcodes (after the 0xfd prefix) used by the kernels. */
const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  store: 0x0b,
  const: 0x0c,
  f32x4Splat: 0x13,
  f32x4Ne: 0x42,
  f32x4Gt: 0x44,
  and: 0x4e,
  andnot: 0x4f,
  or: 0x50,
  bitselect: 0x52,
  f32x4Sqrt: 0xe3,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  f32x4Div: 0xe7,
  f32x4Min: 0xe8,
  f32x4Max: 0xe9,
} as const;

/** The body of one function: its locals and instructions. Every function returns nothing. */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly localTypes: ValType[] = [];

  constructor(readonly params: readonly ValType[]) {}

  /** A new local of the given type; returns its index. */
  local(type: ValType): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }

  get(l: number): this {
    this.code.push(0x20);
    u32(l, this.code);
    return this;
  }

  set(l: number): this {
    this.code.push(0x21);
    u32(l, this.code);
    return this;
  }

  i32(v: number): this {
    this.code.push(0x41);
    s32(v | 0, this.code);
    return this;
  }

  add(): this {
    this.code.push(0x6a);
    return this;
  }

  mul(): this {
    this.code.push(0x6c);
    return this;
  }

  /** local l += delta (i32). */
  inc(l: number, delta: number): this {
    if (delta === 0) return this;
    return this.get(l).i32(delta).add().set(l);
  }

  ne(): this {
    this.code.push(0x47);
    return this;
  }

  /** loop ... end, with `body` inside; `br_if 0` in the body jumps back to its start. */
  loop(body: () => void): this {
    this.code.push(0x03, 0x40);
    body();
    this.code.push(0x0b);
    return this;
  }

  /** Calls function `index` of the module (its arguments on the stack). */
  call(index: number): this {
    this.code.push(0x10);
    u32(index, this.code);
    return this;
  }

  /** Branch to the innermost enclosing loop's start if the i32 on the stack is non-zero. */
  brIf(depth = 0): this {
    this.code.push(0x0d);
    u32(depth, this.code);
    return this;
  }

  private simd(op: number): this {
    this.code.push(0xfd);
    u32(op, this.code);
    return this;
  }

  private memarg(align: number, offset: number): this {
    u32(align, this.code);
    u32(offset, this.code);
    return this;
  }

  /** v128.load from (address on the stack) + offset bytes. */
  load(offset = 0): this {
    return this.simd(SIMD.load).memarg(2, offset);
  }

  /** One f32 from (address) + offset bytes, in all four lanes. */
  loadSplat(offset = 0): this {
    return this.simd(SIMD.load32Splat).memarg(2, offset);
  }

  /** v128.store: [address, value] on the stack. */
  store(offset = 0): this {
    return this.simd(SIMD.store).memarg(2, offset);
  }

  f32x4Const(v: number): this {
    this.simd(SIMD.const);
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeFloatLE(v, 4 * i);
    for (const x of b) this.code.push(x);
    return this;
  }

  f32x4Add(): this {
    return this.simd(SIMD.f32x4Add);
  }

  /** a - b for [a, b] on the stack. */
  f32x4Sub(): this {
    return this.simd(SIMD.f32x4Sub);
  }

  f32x4Mul(): this {
    return this.simd(SIMD.f32x4Mul);
  }

  f32x4Div(): this {
    return this.simd(SIMD.f32x4Div);
  }

  /** Lane-wise minimum / maximum (NaN if either lane is NaN). */
  f32x4Min(): this {
    return this.simd(SIMD.f32x4Min);
  }

  f32x4Max(): this {
    return this.simd(SIMD.f32x4Max);
  }

  f32x4Sqrt(): this {
    return this.simd(SIMD.f32x4Sqrt);
  }

  /** An f32 on the stack in all four lanes. */
  f32x4Splat(): this {
    return this.simd(SIMD.f32x4Splat);
  }

  f32x4Ne(): this {
    return this.simd(SIMD.f32x4Ne);
  }

  f32x4Gt(): this {
    return this.simd(SIMD.f32x4Gt);
  }

  and(): this {
    return this.simd(SIMD.and);
  }

  /** a & ~b for [a, b] on the stack. */
  andnot(): this {
    return this.simd(SIMD.andnot);
  }

  or(): this {
    return this.simd(SIMD.or);
  }

  /** (a & mask) | (b & ~mask) for [a, b, mask] on the stack. */
  bitselect(): this {
    return this.simd(SIMD.bitselect);
  }

  /** The encoded function body (locals + code + end). */
  encode(): number[] {
    const body: number[] = [];
    // Locals, run-length encoded by type.
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last !== undefined && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    u32(groups.length, body);
    for (const [count, t] of groups) {
      u32(count, body);
      body.push(t);
    }
    for (const b of this.code) body.push(b);
    body.push(0x0b);
    const out: number[] = [];
    u32(body.length, out);
    for (const b of body) out.push(b);
    return out;
  }
}

function section(id: number, content: number[], out: number[]): void {
  out.push(id);
  u32(content.length, out);
  for (const b of content) out.push(b);
}

/**
 * A module importing `env.memory` (shared when the backend's memory is, as in the threaded build)
 * and exporting the given functions.
 */
export function buildModule(
  funcs: readonly { name: string; fn: FunctionBuilder }[],
  sharedMemory: boolean,
): Uint8Array {
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  // Types: one per function (duplicates are allowed).
  const types: number[] = [];
  u32(funcs.length, types);
  for (const { fn } of funcs) {
    types.push(0x60);
    u32(fn.params.length, types);
    types.push(...fn.params);
    u32(0, types);
  }
  section(1, types, out);
  const imports: number[] = [];
  u32(1, imports);
  name('env', imports);
  name('memory', imports);
  imports.push(0x02);
  if (sharedMemory) {
    imports.push(0x03);
    u32(0, imports);
    u32(65536, imports);
  } else {
    imports.push(0x00);
    u32(0, imports);
  }
  section(2, imports, out);
  const fns: number[] = [];
  u32(funcs.length, fns);
  funcs.forEach((_, i) => u32(i, fns));
  section(3, fns, out);
  const exports: number[] = [];
  u32(funcs.length, exports);
  funcs.forEach(({ name: n }, i) => {
    name(n, exports);
    exports.push(0x00);
    u32(i, exports);
  });
  section(7, exports, out);
  const code: number[] = [];
  u32(funcs.length, code);
  for (const { fn } of funcs) for (const b of fn.encode()) code.push(b);
  section(10, code, out);
  return Uint8Array.from(out);
}
