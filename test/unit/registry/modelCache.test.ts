/**
 * ModelCache's scoring on the wasm backend, against what it computed before its fast path: the
 * model's predict with the stock FusedConv2D, then temperature scaling with tf ops. An in-memory
 * stand-in for the blob store holds the models.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../src/ml/backend';
import {
  PROJECT_WASM_KERNELS,
  registerWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from '@image-triage/tfjs-wasm-kernels';
import { buildModel, ModelName } from '../../../src/ml/models';
import { loadModel, ModelCard, saveModel } from '../../../src/ml/modelStore';
import { LoadedModel, ModelCache, ScoredImage, ShapeMismatch } from '../../../src/registry/modelCache';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import type { BlobData, BlobStore, PutOptions, PutResult } from '../../../src/storage/blobStore';
import { randomArray } from '../../../packages/tfjs-wasm-kernels/test/compare';

/** The part of BlobStore that saving, loading and the model cache use, in memory. */
class MemoryStore {
  private readonly blobs = new Map<string, BlobData>();
  private n = 0;

  async get(container: string, name: string): Promise<BlobData | undefined> {
    return this.blobs.get(`${container}/${name}`);
  }

  async head(
    container: string,
    name: string,
  ): Promise<{ etag: string; metadata: Record<string, string>; size: number } | undefined> {
    const b = this.blobs.get(`${container}/${name}`);
    return b === undefined ? undefined : { etag: b.etag, metadata: b.metadata, size: b.data.length };
  }

  async put(container: string, name: string, data: Buffer | string, opts: PutOptions = {}): Promise<PutResult> {
    const key = `${container}/${name}`;
    if (opts.ifNoneExists === true && this.blobs.has(key)) return { written: false, reason: 'exists' };
    const etag = `"${++this.n}"`;
    this.blobs.set(key, {
      data: Buffer.from(data),
      etag,
      metadata: opts.metadata ?? {},
      contentType: opts.contentType,
      lastModified: new Date(),
    });
    return { written: true, etag };
  }

  async getJson<T>(container: string, name: string): Promise<{ value: T; etag: string } | undefined> {
    const b = await this.get(container, name);
    return b === undefined ? undefined : { value: JSON.parse(b.data.toString('utf8')) as T, etag: b.etag };
  }

  async putJson(
    container: string,
    name: string,
    value: unknown,
    opts: Omit<PutOptions, 'contentType'> = {},
  ): Promise<PutResult> {
    return this.put(container, name, JSON.stringify(value), { ...opts, contentType: 'application/json' });
  }
}

function card(version: string, architecture: string, temperature: number): ModelCard {
  return {
    version,
    createdAt: new Date(0).toISOString(),
    architecture,
    backend: { name: 'wasm', tfjsVersion: tf.version.tfjs },
    data: { source: 'test', manifestHash: 'test', trainImages: 0, validationImages: 0 },
    preprocessing: { profile: 'mnist', version: '1' },
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    inputShape: [28, 28, 1],
    metrics: {},
    temperature,
    thresholds: { selective: { targetError: 0.005, threshold: 0.9, validationCoverage: 0 } },
  };
}

/** A functional (not Sequential) model: scored through model.predict. */
function functionalModel(): tf.LayersModel {
  const input = tf.input({ shape: [28, 28, 1] });
  const conv = tf.layers
    .conv2d({ filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.heNormal({ seed: 5 }) })
    .apply(input) as tf.SymbolicTensor;
  const flat = tf.layers.flatten().apply(conv) as tf.SymbolicTensor;
  const out = tf.layers
    .dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 6 }) })
    .apply(flat) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

async function promote(store: MemoryStore, version: string): Promise<void> {
  await store.putJson(CONTAINERS.models, paths.currentModel(), { version });
}

/** What scoring computed before: predict (stock FusedConv2D), then softmax(log(max(p, 1e-12)) / T) in tf. */
async function reference(store: MemoryStore, version: string, images: Float32Array[]): Promise<Float32Array> {
  const { model, card: c } = await loadModel(store as unknown as BlobStore, version);
  unregisterWasmTrainingKernels();
  registerWasmTrainingKernels(PROJECT_WASM_KERNELS.filter((k) => k !== 'FusedConv2D'));
  try {
    const flat = new Float32Array(images.length * 784);
    images.forEach((im, i) => flat.set(im, i * 784));
    return tf.tidy(() => {
      const p = model.predict(tf.tensor4d(flat, [images.length, 28, 28, 1])) as tf.Tensor;
      return tf.softmax(tf.div(tf.log(tf.maximum(p, 1e-12)), c.temperature)).dataSync() as Float32Array;
    });
  } finally {
    registerWasmTrainingKernels();
    model.dispose();
  }
}

function maxDiff(scored: ScoredImage[], expected: Float32Array): number {
  let d = 0;
  scored.forEach((s, i) => {
    expect(s.probabilities.length).toBe(10);
    s.probabilities.forEach((v, k) => (d = Math.max(d, Math.abs(v - (expected[i * 10 + k] as number)))));
  });
  return d;
}

const images = Array.from({ length: 7 }, (_, i) => randomArray(784, 100 + i, 0, 1));

let store: MemoryStore;

beforeAll(async () => {
  expect((await initBackend('wasm')).name).toBe('wasm');
  store = new MemoryStore();
  const models: [string, ModelName | 'functional', number][] = [
    ['cnn-t1', 'cnn', 1],
    ['cnn-t2', 'cnn', 2.5],
    ['mlp-t1', 'mlp', 1.3],
    ['func-t1', 'functional', 0.8],
  ];
  for (const [version, arch, t] of models) {
    const m = arch === 'functional' ? functionalModel() : buildModel(arch, { seed: 11 });
    await saveModel(store as unknown as BlobStore, m, card(version, arch, t));
    m.dispose();
  }
});

describe.each(['cnn-t1', 'cnn-t2', 'mlp-t1', 'func-t1'])('model %s', (version) => {
  it('scores concurrent images in micro-batches, as predict + tf temperature scaling did (1e-5)', () =>
    withModel(version, 3, async (loaded) => {
      const predicts = [
        jest.spyOn(tf.LayersModel.prototype, 'predict'),
        jest.spyOn(tf.Sequential.prototype, 'predict'),
      ];
      const scored = await Promise.all(images.map((im) => loaded.score(im)));
      // Sequential models run their layers directly; others through predict.
      expect(predicts.some((p) => p.mock.calls.length > 0)).toBe(version.startsWith('func'));
      predicts.forEach((p) => p.mockRestore());
      expect(scored.map((s) => s.batchSize)).toEqual([3, 3, 3, 3, 3, 3, 1]);
      for (const s of scored) {
        expect(s.predictMs).toBeGreaterThanOrEqual(0);
        expect(s.probabilities.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
      }
      expect(maxDiff(scored, await reference(store, version, images))).toBeLessThan(1e-5);
      // One at a time: batches of one, the same numbers.
      const single = [];
      for (const im of images.slice(0, 2)) single.push(await loaded.score(im));
      expect(single.map((s) => s.batchSize)).toEqual([1, 1]);
      expect(maxDiff(single, await reference(store, version, images.slice(0, 2)))).toBeLessThan(1e-5);
    }));
});

/** Promotes `version` and runs `f` on it through a fresh ModelCache. */
async function withModel(
  version: string,
  maxBatch: number | undefined,
  f: (loaded: LoadedModel) => Promise<void>,
  inferThreads?: number,
): Promise<void> {
  await promote(store, version);
  const cache = new ModelCache(store as unknown as BlobStore, {
    backend: 'wasm',
    ...(maxBatch === undefined ? {} : { maxBatch }),
    ...(inferThreads === undefined ? {} : { inferThreads }),
  });
  try {
    const loaded = await cache.current();
    if (loaded === undefined) throw new Error('no model loaded');
    expect(loaded.version).toBe(version);
    await f(loaded);
  } finally {
    cache.dispose();
  }
}

it('a batch of 64 and more (above predict batch size of 32) matches too', () =>
  withModel('cnn-t2', undefined, async (loaded) => {
    const many = Array.from({ length: 70 }, (_, i) => randomArray(784, 200 + i, 0, 1));
    const scored = await Promise.all(many.map((im) => loaded.score(im)));
    expect(scored[0]?.batchSize).toBe(64);
    expect(scored[69]?.batchSize).toBe(6);
    expect(maxDiff(scored, await reference(store, 'cnn-t2', many))).toBeLessThan(1e-5);
  }));

it('on two threads (a worker scores part of each batch) the numbers are the same', () =>
  withModel(
    'cnn-t2',
    undefined,
    async (loaded) => {
      expect(await loaded.threadsReady()).toBe(2);
      const many = Array.from({ length: 9 }, (_, i) => randomArray(784, 300 + i, 0, 1));
      const scored = await Promise.all(many.map((im) => loaded.score(im)));
      expect(scored[0]?.batchSize).toBe(9);
      expect(maxDiff(scored, await reference(store, 'cnn-t2', many))).toBeLessThan(1e-5);
    },
    2,
  ));

it('rejects an image of the wrong size', () =>
  withModel('cnn-t1', undefined, async (loaded) => {
    await expect(loaded.score(new Float32Array(10))).rejects.toBeInstanceOf(ShapeMismatch);
  }));
