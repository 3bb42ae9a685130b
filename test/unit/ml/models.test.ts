import * as tf from '@tensorflow/tfjs';
import { buildModel, MODEL_NAMES, reseedDropout } from '../../../src/ml/models';
import { quietTfjsNotes } from '../../../src/ml/backend';

beforeAll(async () => {
  quietTfjsNotes();
  await tf.setBackend('cpu');
});

async function weightsOf(m: tf.LayersModel): Promise<number[][]> {
  return Promise.all(m.getWeights().map(async (w) => Array.from(await w.data())));
}

describe('buildModel', () => {
  it.each(MODEL_NAMES)('%s maps a batch of images to softmax rows over the classes', (name) => {
    const m = buildModel(name, { inputShape: [28, 28, 1], classNames: ['a', 'b', 'c'], seed: 7 });
    const y = m.predict(tf.zeros([2, 28, 28, 1])) as tf.Tensor;
    expect(y.shape).toEqual([2, 3]);
    const rows = y.sum(1).arraySync() as number[];
    rows.forEach((s) => expect(s).toBeCloseTo(1, 5));
    expect(m.optimizer).toBeDefined();
    m.dispose();
  });

  it('is deterministic under a seed and differs across seeds', async () => {
    const a = await weightsOf(buildModel('cnn', { seed: 5 }));
    const b = await weightsOf(buildModel('cnn', { seed: 5 }));
    const c = await weightsOf(buildModel('cnn', { seed: 6 }));
    expect(a).toEqual(b);
    expect(a[0]).not.toEqual(c[0]);
  });

  it('builds the speed-benchmark peer CNN', () => {
    const m = buildModel('peer');
    const summary = m.layers.map((l) => l.getClassName());
    expect(summary).toEqual(['Conv2D', 'MaxPooling2D', 'Conv2D', 'MaxPooling2D', 'Flatten', 'Dense', 'Dense']);
    const conv = m.layers
      .filter((l) => l.getClassName() === 'Conv2D')
      .map((l) => (l.getConfig() as { filters: number }).filters);
    expect(conv).toEqual([16, 32]);
    expect((m.layers[5]?.getConfig() as { units: number }).units).toBe(64);
  });

  it('rejects a zero seed (tfjs would treat it as random) and unknown names', () => {
    expect(() => buildModel('mlp', { seed: 0 })).toThrow(/positive integer/);
    expect(() => buildModel('nope' as 'mlp')).toThrow(/unknown model/);
  });

  it('reseedDropout gives dropout layers a new non-zero seed per step', () => {
    const m = buildModel('mlp');
    const seeds = () =>
      m.layers.filter((l) => l.getClassName() === 'Dropout').map((l) => (l as unknown as { seed: number }).seed);
    reseedDropout(m, 1, 0);
    const s0 = seeds();
    reseedDropout(m, 1, 1);
    const s1 = seeds();
    expect(s0).toHaveLength(2);
    expect(s0).not.toEqual(s1);
    [...s0, ...s1].forEach((s) => expect(s).toBeGreaterThan(0));
  });
});
