/**
 * InferencePool: a batch split over worker threads scores what the calling thread alone scores, in
 * order; a worker that dies mid-batch loses no image (its share is scored here) and is reported.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../src/ml/backend';
import { forwardPass, InferencePool, scoreFlat, shares } from '../../../src/ml/inference';
import { buildModel } from '../../../src/ml/models';
import { randomArray } from '../../../packages/tfjs-wasm-kernels/test/compare';

const SHAPE: [number, number, number] = [32, 32, 1];
const SIZE = 32 * 32;

let model: tf.LayersModel;

beforeAll(async () => {
  expect((await initBackend('wasm')).name).toBe('wasm');
  model = buildModel('screen', { inputShape: SHAPE, classNames: ['NORMAL', 'PNEUMONIA'], seed: 3 });
});

afterAll(() => model.dispose());

function alone(flat: Float32Array, n: number): Float32Array {
  return scoreFlat(tf, forwardPass(tf, model, SHAPE), SHAPE, flat, n);
}

it('splits a batch into near-equal shares', () => {
  expect(shares(7, 2)).toEqual([4, 3]);
  expect(shares(1, 2)).toEqual([1]);
  expect(shares(9, 3)).toEqual([3, 3, 3]);
  expect(shares(0, 2)).toEqual([]);
});

it('scores a batch on three threads as on one, image for image', async () => {
  const logs: string[] = [];
  const pool = new InferencePool(tf, model, SHAPE, { threads: 3, backend: 'wasm', log: (m) => logs.push(m) });
  try {
    await pool.started;
    expect(pool.threads).toBe(3);
    for (const n of [1, 2, 7]) {
      const flat = randomArray(n * SIZE, 40 + n, 0, 1);
      const got = await pool.predict(flat, n);
      const want = alone(flat, n);
      expect(got.length).toBe(n * 2);
      for (let i = 0; i < want.length; i++)
        expect(Math.abs((got[i] as number) - (want[i] as number))).toBeLessThan(1e-6);
    }
    expect(logs).toEqual([]);
  } finally {
    pool.dispose();
  }
});

it('a worker that stops mid-batch loses no image: its share is scored here, and it is reported', async () => {
  const logs: string[] = [];
  const pool = new InferencePool(tf, model, SHAPE, { threads: 2, backend: 'wasm', log: (m) => logs.push(m) });
  try {
    await pool.started;
    expect(pool.threads).toBe(2);
    const flat = randomArray(6 * SIZE, 77, 0, 1);
    // Stop the worker from outside: it still counts as ready until its exit is seen, so it is
    // given its share of the next batch, which it never answers.
    const workers = (pool as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers;
    void workers[0]?.worker.terminate();
    const pending = pool.predict(flat, 6);
    const got = await pending;
    const want = alone(flat, 6);
    for (let i = 0; i < want.length; i++) expect(Math.abs((got[i] as number) - (want[i] as number))).toBeLessThan(1e-6);
    expect(logs.join('\n')).toMatch(/inference worker 1 stopped \(exited with code 1\)/);
    expect(logs.join('\n')).toMatch(/its 3 images are scored on the calling thread/);
    expect(pool.threads).toBe(1);
    // Later batches go to the threads left.
    const again = await pool.predict(flat, 6);
    expect(Array.from(again)).toEqual(Array.from(got));
  } finally {
    pool.dispose();
  }
});
