import * as tf from '@tensorflow/tfjs';
import { freshStore } from '../../helpers/azurite';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { buildModel } from '../../../src/ml/models';
import { quietTfjsNotes } from '../../../src/ml/backend';
import { ModelCard, currentVersion, loadModel, readCard, saveModel } from '../../../src/ml/modelStore';
import { encodeNpy } from '../../../src/imaging/npy';
import { loadBlobDataset } from '../../../src/ml/data/blob';

function card(version: string): ModelCard {
  return {
    version,
    createdAt: new Date(0).toISOString(),
    architecture: 'mlp',
    backend: { name: 'cpu', tfjsVersion: tf.version.tfjs },
    data: { source: 'test', manifestHash: 'sha256:00', trainImages: 1, validationImages: 0 },
    preprocessing: { profile: 'mnist', version: '1.0.0' },
    classNames: ['a', 'b', 'c'],
    inputShape: [8, 8, 1],
    metrics: { accuracy: 0.5 },
    temperature: 1.5,
    thresholds: { selective: { targetError: 0.005, threshold: 0.97, validationCoverage: 0.9 } },
  };
}

describe('model store on Blob Storage', () => {
  let store: BlobStore;
  beforeAll(async () => {
    quietTfjsNotes();
    await tf.setBackend('cpu');
    store = await freshStore();
  });

  it('saves model.json, weights and card.json under models/{version}/ and loads the same model back', async () => {
    const model = buildModel('mlp', { inputShape: [8, 8, 1], classNames: ['a', 'b', 'c'], seed: 11 });
    await saveModel(store, model, card('v1'));
    const names: string[] = [];
    for await (const b of store.list(CONTAINERS.models, 'v1/')) names.push(b.name);
    expect(names.sort()).toEqual(['v1/card.json', 'v1/model.json', 'v1/weights.bin']);

    const { model: loaded, card: c } = await loadModel(store, 'v1');
    expect(c.temperature).toBe(1.5);
    expect(c.classNames).toEqual(['a', 'b', 'c']);
    const x = tf.randomUniform([4, 8, 8, 1], 0, 1, 'float32', 3);
    const a = await (model.predict(x) as tf.Tensor).data();
    const b = await (loaded.predict(x) as tf.Tensor).data();
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(loaded.optimizer).toBeDefined();
  });

  it('refuses to overwrite a version', async () => {
    const model = buildModel('mlp', { inputShape: [8, 8, 1], classNames: ['a', 'b', 'c'] });
    await expect(saveModel(store, model, card('v1'))).rejects.toThrow(/immutable/);
  });

  it('loads the promoted model through models/current.json, and says when none is promoted', async () => {
    await expect(loadModel(store, 'current')).rejects.toThrow(/no model is promoted/);
    expect(await currentVersion(store)).toBeUndefined();
    await store.putJson(CONTAINERS.models, paths.currentModel(), { version: 'v1' });
    expect((await readCard(store, 'current')).version).toBe('v1');
    const { card: c } = await loadModel(store, 'current');
    expect(c.version).toBe('v1');
    await expect(readCard(store, 'v2')).rejects.toThrow(/v2/);
  });
});

describe('labeled data from Blob Storage', () => {
  it('pairs labels/{name}.json with preprocessed/{name}.npy, skipping labels without pixels', async () => {
    const store = await freshStore();
    const n = 60;
    for (let i = 0; i < n; i++) {
      const name = `batch/img-${i}.png`;
      const cls = String(i % 3);
      const pixels = new Float32Array(28 * 28).fill((i % 3) / 2);
      await store.put(CONTAINERS.preprocessed, paths.preprocessed(name), encodeNpy(pixels, [28, 28, 1]), {
        metadata: { profile: 'mnist', profileversion: '1.0.0' },
      });
      await store.putJson(CONTAINERS.labels, paths.label(name), { class: cls, reviewer: 'test' });
    }
    await store.putJson(CONTAINERS.labels, paths.label('orphan.png'), { class: '1' });
    let progress = 0;
    const d = await loadBlobDataset(store, { concurrency: 8, onProgress: (done) => (progress = done) });
    expect(progress).toBe(n + 1);
    expect(d.report.loaded).toBe(n);
    expect(d.report.skipped.map((s) => s.name)).toEqual(['orphan.png']);
    expect(d.train.labels.length + d.test.labels.length).toBe(n);
    expect(d.test.labels.length).toBeGreaterThan(0);
    expect(d.train.classNames).toEqual(['0', '1', '2']);
    expect(d.train.shape).toEqual([28, 28, 1]);
    expect(d.report.preprocessing).toEqual({ profile: 'mnist', version: '1.0.0' });
    // pixels belong to their label: class c was filled with c / 2
    d.train.labels.forEach((l, i) => expect(d.train.images[i * 784]).toBeCloseTo(l / 2, 6));
  });
});
