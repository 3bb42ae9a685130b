import * as tf from '@tensorflow/tfjs';
import { buildModel } from '../../../src/ml/models';
import { loadMnistPackage } from '../../../src/ml/data/mnistPackage';
import { LabeledImages, mulberry32, slice } from '../../../src/ml/data/dataset';
import { augmentBatch, train } from '../../../src/ml/train';
import { evaluateModel } from '../../../src/ml/evaluate';

beforeAll(async () => {
  // The stock wasm backend trains dense layers fast (the tests here use the MLP only).
  await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm');
});

function tiny(n: number): LabeledImages {
  // 4x4 images: class 1 has a bright left half, class 0 a bright right half.
  const images = new Float32Array(n * 16);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let y = 0; y < 4; y++)
      for (let x = 0; x < 4; x++) images[i * 16 + y * 4 + x] = x < 2 === (i % 2 === 1) ? 0.9 : 0.1;
  }
  return { images, labels, shape: [4, 4, 1], classNames: ['right', 'left'], source: 'tiny' };
}

describe('train', () => {
  it('learns real MNIST digits well above chance in a short run (MLP, 1,000 images)', async () => {
    const { train: tr, test } = loadMnistPackage();
    const model = buildModel('mlp', { seed: 3 });
    const epochs: number[] = [];
    const result = await train(model, slice(tr, 0, 1000), {
      epochs: 3,
      batchSize: 32,
      validationSplit: 0.1,
      onEpoch: (s) => void epochs.push(s.epoch),
    });
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

  it('with weightAverage, validates and ends with the moving average of the weights', async () => {
    const m = buildModel('mlp', { inputShape: [4, 4, 1], classNames: ['right', 'left'], seed: 9 });
    const decay = 0.8;
    // Expected average, from the trained weights seen after every step (warm-up (1 + t) / (10 + t)).
    let avg = m.getWeights().map((w) => Float64Array.from(w.dataSync()));
    let t = 0;
    const seenAfterStep: Float32Array[][] = [];
    const r = await train(m, tiny(64), {
      epochs: 3,
      batchSize: 16,
      validationSplit: 0.25,
      patience: 0,
      weightAverage: decay,
      onBatch: () => {
        const live = m.getWeights().map((w) => Float32Array.from(w.dataSync()));
        seenAfterStep.push(live);
        const d = Math.min(decay, (1 + t) / (10 + t));
        t++;
        avg = avg.map((a, i) => a.map((v, j) => v * d + ((live[i] as Float32Array)[j] as number) * (1 - d)));
      },
    });
    expect(r.options.weightAverage).toBe(decay);
    expect(t).toBe(3 * 3); // 48 training images / 16
    const final = m.getWeights().map((w) => Array.from(w.dataSync()));
    final.forEach((w, i) => w.forEach((v, j) => expect(v).toBeCloseTo((avg[i] as Float64Array)[j] as number, 5)));
    // ...which is not simply the last trained weights.
    const last = seenAfterStep[seenAfterStep.length - 1] as Float32Array[];
    expect(final.some((w, i) => w.some((v, j) => Math.abs(v - ((last[i] as Float32Array)[j] as number)) > 1e-4))).toBe(
      true,
    );
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
  it('augmentBatch applies a smooth elastic displacement of the documented size', () => {
    // On a ramp image (value = x, or = y) bilinear sampling is exact, so away from the border each
    // output pixel reads back the displacement the field applied there.
    const h = 28;
    const w = 28;
    const rampX = Float32Array.from({ length: h * w }, (_, i) => i % w);
    const rampY = Float32Array.from({ length: h * w }, (_, i) => Math.floor(i / w));
    const rndA = mulberry32(7);
    const rndB = mulberry32(7);
    augmentBatch(rampX, 1, [h, w, 1], { elastic: 34 }, rndA);
    augmentBatch(rampY, 1, [h, w, 1], { elastic: 34 }, rndB);
    const dx: number[] = [];
    const dy: number[] = [];
    let roughness = 0;
    let pairs = 0;
    for (let y = 8; y < 20; y++)
      for (let x = 8; x < 20; x++) {
        dx.push((rampX[y * w + x] as number) - x);
        dy.push((rampY[y * w + x] as number) - y);
        roughness += Math.abs((rampX[y * w + x + 1] as number) - (x + 1) - ((rampX[y * w + x] as number) - x));
        pairs++;
      }
    const rms = Math.sqrt([...dx, ...dy].reduce((a, d) => a + d * d, 0) / (dx.length + dy.length));
    // uniform(-1, 1) noise blurred by a unit-sum Gaussian of sigma 4 has sd sqrt(1/3 / (4 pi 16)) = 0.041; x 34 = 1.4 px.
    expect(rms).toBeGreaterThan(0.6);
    expect(rms).toBeLessThan(2.8);
    // Smooth: neighbouring pixels move nearly together.
    expect(roughness / pairs).toBeLessThan(0.25 * rms);
    // The two fields differ (x and y are drawn independently) and the draw is reproducible.
    expect(dx).not.toEqual(dy);
    const again = Float32Array.from({ length: h * w }, (_, i) => i % w);
    augmentBatch(again, 1, [h, w, 1], { elastic: 34 }, mulberry32(7));
    expect(Array.from(again)).toEqual(Array.from(rampX));
  });
});
