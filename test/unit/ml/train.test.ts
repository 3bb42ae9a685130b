import * as tf from '@tensorflow/tfjs';
import { buildModel } from '../../../src/ml/models';
import { loadMnistPackage } from '../../../src/ml/data/mnistPackage';
import { LabeledImages, slice } from '../../../src/ml/data/dataset';
import { augmentBatch, train } from '../../../src/ml/train';
import { evaluateModel } from '../../../src/ml/evaluate';

beforeAll(async () => {
  // The stock wasm backend trains dense layers fast (the tests here use the MLP only).
  require('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm');
});

function tiny(n: number): LabeledImages {
  // 4x4 images: class 1 has a bright left half, class 0 a bright right half.
  const images = new Float32Array(n * 16);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) images[i * 16 + y * 4 + x] = (x < 2) === (i % 2 === 1) ? 0.9 : 0.1;
  }
  return { images, labels, shape: [4, 4, 1], classNames: ['right', 'left'], source: 'tiny' };
}

describe('train', () => {
  it('learns real MNIST digits well above chance in a short run (MLP, 1,000 images)', async () => {
    const { train: tr, test } = loadMnistPackage();
    const model = buildModel('mlp', { seed: 3 });
    const epochs: number[] = [];
    const result = await train(model, slice(tr, 0, 1000), { epochs: 3, batchSize: 32, validationSplit: 0.1, onEpoch: (s) => void epochs.push(s.epoch) });
    expect(epochs).toEqual([1, 2, 3]);
    expect(result.validation?.labels.length).toBe(100);
    const report = await evaluateModel(model, slice(test, 0, 400), { validation: result.validation });
    expect(report.accuracy).toBeGreaterThan(0.8); // chance is 0.1
    expect(result.history[2]?.loss).toBeLessThan(result.history[0]?.loss as number);
    model.dispose();
  });

  it('is reproducible: same seeds, same data, same weights (dropout and augmentation included)', async () => {
    const run = async () => {
      const m = buildModel('mlp', { inputShape: [4, 4, 1], classNames: ['right', 'left'], seed: 9 });
      await train(m, tiny(64), { epochs: 2, batchSize: 16, seed: 4, augment: { shift: 1, flip: true } });
      const w = await Promise.all(m.getWeights().map((t) => t.data()));
      m.dispose();
      return w.map((a) => Array.from(a));
    };
    expect(await run()).toEqual(await run());
  });

  it('stops early and restores the best weights when validation loss stops improving', async () => {
    const m = buildModel('mlp', { inputShape: [4, 4, 1], classNames: ['right', 'left'], seed: 2, learningRate: 0.5 });
    const data = tiny(40);
    // Validation labels flipped: the better the model learns the training data, the worse validation gets.
    const validation: LabeledImages = { ...tiny(20), labels: Int32Array.from(tiny(20).labels, (l) => 1 - l) };
    const r = await train(m, data, { epochs: 20, batchSize: 8, validation, patience: 2 });
    expect(r.stoppedEarly).toBe(true);
    expect(r.history.length).toBeLessThan(20);
    const best = Math.min(...r.history.map((h) => h.valLoss as number));
    expect(r.history[r.bestEpoch - 1]?.valLoss).toBe(best);
    m.dispose();
  });

  it('augmentBatch shifts with zero fill and mirrors', () => {
    const img = Float32Array.from({ length: 9 }, (_, i) => i + 1); // 3x3: 1..9
    const always = () => 0; // dx = dy = -shift; flip chosen (0 < 0.5)
    const shifted = img.slice();
    augmentBatch(shifted, 1, [3, 3, 1], { shift: 1 }, always);
    // shifted up and left by one: row0 = 5 6 0, row1 = 8 9 0, row2 = 0 0 0
    expect(Array.from(shifted)).toEqual([5, 6, 0, 8, 9, 0, 0, 0, 0]);
    const flipped = img.slice();
    augmentBatch(flipped, 1, [3, 3, 1], { flip: true }, always);
    expect(Array.from(flipped)).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7]);
  });

  it('augmentBatch rotates and zooms with an affine map about the centre', () => {
    const img = Float32Array.from({ length: 9 }, (_, i) => i + 1);
    // rnd() = 0.5 draws the middle of every range: no rotation, zoom 1, no shift -> unchanged.
    const same = img.slice();
    augmentBatch(same, 1, [3, 3, 1], { rotate: 30, scale: 0.2, shift: 1 }, () => 0.5);
    Array.from(same).forEach((v, i) => expect(v).toBeCloseTo(img[i] as number, 5));
    // rnd() = 0.75 with rotate 180 draws +90 degrees: rows become columns.
    const turned = img.slice();
    augmentBatch(turned, 1, [3, 3, 1], { rotate: 180 }, () => 0.75);
    Array.from(turned).forEach((v, i) => expect(v).toBeCloseTo([7, 4, 1, 8, 5, 2, 9, 6, 3][i] as number, 5));
  });
});
