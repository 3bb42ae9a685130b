/**
 * Data-parallel steps (bench/dataParallel.ts): a step split across the main thread and a
 * worker equals the single-thread step on the whole batch (same weights afterwards).
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../../src/ml/backend';
import { DataParallelTrainer } from '../../../bench/dataParallel';
import { randomArray } from '../../../packages/tfjs-wasm-kernels/test/compare';

function peer(seed: number): tf.LayersModel {
  const init = (s: number): ReturnType<typeof tf.initializers.glorotUniform> =>
    tf.initializers.glorotUniform({ seed: seed + s });
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [12, 12, 1],
        filters: 4,
        kernelSize: 3,
        activation: 'relu',
        kernelInitializer: init(1),
      }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(2) }),
    ],
  });
  m.compile({ optimizer: tf.train.adam(1e-2), loss: 'categoricalCrossentropy' });
  return m;
}

describe('DataParallelTrainer', () => {
  it('takes the same steps as the whole batch on one thread', async () => {
    await initBackend('wasm');
    const batch = 10;
    const x = tf.tensor4d(randomArray(batch * 144, 1, 0, 1), [batch, 12, 12, 1]);
    const y = tf
      .oneHot(
        tf.tensor1d(
          Array.from({ length: batch }, (_, i) => (i * 3) % 10),
          'int32',
        ),
        10,
      )
      .toFloat();

    const single = peer(5);
    const parallel = peer(5);
    const trainer = await DataParallelTrainer.create(parallel, { workers: 1 });
    try {
      for (let step = 0; step < 3; step++) {
        const a = (await single.trainOnBatch(x, y)) as number;
        const b = await trainer.trainOnBatch(x, y);
        expect(Math.abs(a - b)).toBeLessThan(1e-4 * Math.max(1, Math.abs(a)));
      }
      const ws = single.getWeights();
      const wp = parallel.getWeights();
      expect(wp).toHaveLength(ws.length);
      ws.forEach((w, i) => {
        const diff = tf.tidy(() => tf.max(tf.abs(w.sub(wp[i] as tf.Tensor))).dataSync()[0] as number);
        expect(diff).toBeLessThan(1e-4);
      });
    } finally {
      await trainer.dispose();
    }
  });

  it('refuses an uncompiled model', async () => {
    const m = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 2 })] });
    await expect(DataParallelTrainer.create(m)).rejects.toThrow(/compiled model/);
  });
});
