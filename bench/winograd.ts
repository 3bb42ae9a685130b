/**
 * The Winograd F(4x4, 3x3) kernel (packages/tfjs-wasm-kernels/src/winograd.ts) against the SIMD direct fused
 * convolution (the project FusedConv2D) on the screening CNN's conv2..conv5 geometries (128x128
 * input), same padding, bias and relu: ms per image of one call at --batch (default 64), calls
 * alternating in one process (--rounds, default 6, summed), and the largest difference between
 * the two outputs relative to the largest output.
 *
 *   npm run bench:winograd -- [--batch 64] [--rounds 6]
 */
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend';
import { WINOGRAD_KERNEL, winogradFilter } from '@image-triage/tfjs-wasm-kernels';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i < 0 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} expects a positive integer`);
  return v;
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const bs = option('--batch', 64);
  const rounds = option('--rounds', 6);
  console.log(
    `batch ${bs}, ${rounds} alternating calls each; load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`,
  );
  for (const [hw, cin, cout] of [
    [64, 16, 32],
    [32, 32, 64],
    [16, 64, 128],
    [8, 128, 128],
  ] as const) {
    const x = tf.randomUniform<tf.Rank.R4>([bs, hw, hw, cin], 0, 1, 'float32', 1);
    const filter = tf.randomUniform<tf.Rank.R4>([3, 3, cin, cout], -0.2, 0.2, 'float32', 2);
    const bias = tf.randomUniform<tf.Rank.R1>([cout], -0.1, 0.1, 'float32', 3);
    const u = tf.tensor3d(winogradFilter(filter.dataSync() as Float32Array, cin, cout), [36, cin, cout]);
    const direct = (): tf.Tensor => tf.fused.conv2d({ x, filter, bias, pad: 'same', activation: 'relu', strides: 1 });
    const winograd = (): tf.Tensor =>
      tf.engine().runKernel<tf.Tensor>(WINOGRAD_KERNEL, { x, u, filter, bias }, { pad: 'same', relu: true });
    const [a, b] = [direct(), winograd()];
    const err = tf.tidy(
      () =>
        tf
          .max(tf.abs(tf.sub(a, b)))
          .div(tf.max(tf.abs(a)))
          .dataSync()[0] as number,
    );
    tf.dispose([a, b]);
    const ms = { direct: 0, winograd: 0 };
    for (let r = 0; r < rounds; r++)
      for (const [k, f] of [
        ['direct', direct],
        ['winograd', winograd],
      ] as const) {
        const t0 = performance.now();
        f().dispose();
        ms[k] += performance.now() - t0;
      }
    const per = (v: number): string => (v / rounds / bs).toFixed(3);
    console.log(
      `${hw}x${hw}x${cin} -> ${cout}: direct ${per(ms.direct)} ms/img, Winograd ${per(ms.winograd)} ms/img (${(ms.direct / ms.winograd).toFixed(2)}x); difference ${err.toExponential(1)} of the largest output`,
    );
    tf.dispose([x, filter, bias, u]);
  }
}

void main();
