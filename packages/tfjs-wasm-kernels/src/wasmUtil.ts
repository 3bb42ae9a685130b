/**
 * The small slice of the tfjs wasm backend that the project kernels use.
 *
 * `@tensorflow/tfjs-backend-wasm` ships `BackendWasm` typings that reach into files its package does
 * not ship (wasm-out/*), so the kernels describe what they need here instead. Every kernel in this
 * folder works on tensors that live in the wasm heap: it allocates its outputs with `makeOutput`,
 * reads and writes them through views on the heap, and calls the backend's own (XNNPACK) kernels
 * for the heavy arithmetic.
 */
import * as tf from '@tensorflow/tfjs';

export type TensorInfo = tf.TensorInfo;
export type NamedTensorInfoMap = Record<string, TensorInfo | undefined>;

/** What the kernels read from the wasm backend. */
export interface WasmBackendLike {
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number; shape: number[] } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Arguments tfjs passes a kernel function. */
export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

export function asWasm(backend: unknown): WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  if (
    b == null ||
    typeof b.makeOutput !== 'function' ||
    typeof b.typedArrayFromHeap !== 'function' ||
    b.dataIdMap == null
  ) {
    throw new Error('project kernel called with a backend that is not tfjs wasm');
  }
  return b as WasmBackendLike;
}

export function input(inputs: NamedTensorInfoMap, name: string, kernel: string): TensorInfo {
  const t = inputs[name];
  if (t == null) throw new Error(`${kernel}: missing input '${name}'`);
  return t;
}

/** A float32 view of a tensor in the wasm heap. Take views only after the last allocation of a kernel. */
export function f32(backend: WasmBackendLike, t: TensorInfo): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${t.dtype}`);
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/**
 * Runs another kernel registered for the wasm backend (the original implementation of a kernel, or
 * one we compose with) directly, without going through the engine: the result is a TensorInfo
 * owned by the caller.
 */
export function runKernel(
  name: string,
  inputs: NamedTensorInfoMap,
  attrs: Record<string, unknown>,
  backend: unknown,
): TensorInfo {
  const k = tf.getKernel(name, 'wasm');
  if (k == null) throw new Error(`kernel ${name} is not registered for wasm`);
  const out = k.kernelFunc({ inputs: inputs, attrs: attrs as tf.NamedAttrMap, backend: backend as tf.KernelBackend });
  if (Array.isArray(out)) {
    const first = out[0];
    if (first == null) throw new Error(`kernel ${name} returned no output`);
    return first;
  }
  return out;
}

/** A tensor's byte offset in the wasm heap (what the SIMD kernels take). */
export function heapOffset(backend: WasmBackendLike, t: TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (d == null) throw new Error('tensor is not in the wasm backend');
  return d.memoryOffset;
}

export function dispose(backend: WasmBackendLike, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

/** A 4-tuple from a shape, with a clear error when the rank is wrong. */
export function shape4(t: TensorInfo, what: string): [number, number, number, number] {
  const s = t.shape;
  if (s.length !== 4) throw new Error(`${what}: expected rank 4, got shape [${s.join(',')}]`);
  return [s[0] as number, s[1] as number, s[2] as number, s[3] as number];
}

export type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

/** Conv2D geometry (NHWC, dilation 1) from a kernel's attributes, as the gradient kernels need it. */
export function conv2dInfo(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  attrs: Record<string, unknown>,
): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    'channelsLast',
  );
}

/** Pool2D geometry (NHWC, dilation 1) from a pooling kernel's attributes. */
export function pool2dInfo(x: TensorInfo, attrs: Record<string, unknown>, what: string): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computePool2DInfo(
    shape4(x, what),
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
}
