/**
 * Helpers for testing the project wasm kernels against tfjs's reference cpu backend: run the same
 * computation on both backends from the same plain-array inputs and compare the results.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

/** Deterministic pseudo-random floats in [lo, hi) (mulberry32). */
export function randomArray(size: number, seed: number, lo = -1, hi = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Runs `f` on the named backend and returns every output as a plain Float32Array. */
export async function onBackend(name: 'cpu' | 'wasm', f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  tf.env().set('PROD', true); // no tfjs notes in the test output
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} did not initialise`);
  const outs = tf.tidy(() => {
    const r = f();
    return Array.isArray(r) ? r : [r];
  });
  const data = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  return data;
}

/** max |a - b| / max(max |b|, 1e-6): the error relative to the reference's scale. */
export function relError(actual: Float32Array, expected: Float32Array): number {
  if (actual.length !== expected.length) return Infinity;
  let diff = 0;
  let scale = 1e-6;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number;
    const a = actual[i] as number;
    if (Number.isNaN(a) !== Number.isNaN(e)) return Infinity;
    diff = Math.max(diff, Math.abs(a - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return diff / scale;
}

/** Runs f on cpu (reference) and wasm, and returns the worst relative error over all outputs. */
export async function compareBackends(
  f: () => tf.Tensor | tf.Tensor[],
): Promise<{ err: number; outputs: number; reference: Float32Array[] }> {
  const reference = await onBackend('cpu', f);
  const actual = await onBackend('wasm', f);
  let err = actual.length === reference.length ? 0 : Infinity;
  reference.forEach((r, i) => {
    const a = actual[i];
    err = Math.max(err, a === undefined ? Infinity : relError(a, r));
  });
  return { err, outputs: reference.length, reference };
}
