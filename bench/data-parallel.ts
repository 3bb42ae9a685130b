/**
 * Does a data-parallel step (bench/dataParallel.ts: the batch split between the main thread and
 * worker threads) pay for the default radiograph model? Single-thread steps and data-parallel
 * steps of the `screen` CNN, measured side by side in one process, in alternating rounds (the
 * machine is shared: read the ratio, not the absolute speeds).
 *
 *   npm run bench:dp [-- --rounds 6 --steps 8 --batch 32 --size 128 --workers 1]
 *
 * Random images (the speed does not depend on the pixels). Prints, per round, training steps/s of each and their ratio, and images per CPU-second (all
 * threads of the process: what the split costs in work); then the medians, and how far one
 * data-parallel step lands from the single-thread step of the same batch from the same weights
 * (batch-norm statistics are per shard there). Writes bench/results/data-parallel.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend';
import { buildModel, BuildOptions } from '../src/ml/models';
import { median } from './sweep';
import { DataParallelTrainer } from './dataParallel';

interface Options {
  rounds: number;
  steps: number;
  batch: number;
  size: number;
  workers: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 6, steps: 8, batch: 32, size: 128, workers: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = (argv[i] ?? '').replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(key in o) || !Number.isInteger(value) || value < (key === 'workers' ? 0 : 1))
      throw new Error(
        `usage: data-parallel [--rounds N] [--steps N] [--batch N] [--size N] [--workers N]; got ${argv[i]} ${argv[i + 1]}`,
      );
    o[key as keyof Options] = value;
  }
  return o;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** A batch of random radiograph-sized images, two classes alternating. */
function batchOf(o: Options, seed: number): { x: tf.Tensor4D; y: tf.Tensor2D } {
  return tf.tidy(() => {
    const x = tf.randomUniform<tf.Rank.R4>([o.batch, o.size, o.size, 1], 0, 1, 'float32', seed);
    const labels = tf.tensor1d(
      Array.from({ length: o.batch }, (_, i) => i % 2),
      'int32',
    );
    return { x, y: tf.oneHot(labels, 2).toFloat() as tf.Tensor2D };
  });
}

async function timed(
  steps: number,
  step: () => Promise<unknown>,
): Promise<{ stepsPerSecond: number; cpuPerStep: number }> {
  const c0 = cpuSeconds();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const seconds = (performance.now() - t0) / 1000;
  return { stepsPerSecond: steps / seconds, cpuPerStep: (cpuSeconds() - c0) / steps };
}

/**
 * Cosine similarity between the gradient of the whole batch and the mean of the gradients of its
 * shards (what the split step applies): batch norm in training mode normalises each shard by its
 * own statistics. 1 would be the same direction. `model` is only used for its weights' gradients.
 */
function shardGradientCosine(model: tf.LayersModel, x: tf.Tensor4D, y: tf.Tensor2D, shards: number): number {
  return tf.tidy(() => {
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const grads = (xa: tf.Tensor, ya: tf.Tensor): tf.Tensor[] => {
      const { grads: g } = tf.variableGrads(
        () =>
          tf.metrics.categoricalCrossentropy(ya, model.apply(xa, { training: true }) as tf.Tensor).mean<tf.Scalar>(),
        vars,
      );
      return vars.map((v) => (g[v.name] as tf.Tensor).flatten());
    };
    const whole = tf.concat(grads(x, y));
    const n = x.shape[0];
    const bounds = Array.from({ length: shards + 1 }, (_, i) => Math.round((i * n) / shards));
    let sum = tf.zerosLike(whole);
    for (let i = 0; i < shards; i++) {
      const lo = bounds[i] as number;
      const hi = bounds[i + 1] as number;
      sum = tf.add(sum, tf.mul(tf.concat(grads(x.slice(lo, hi - lo), y.slice(lo, hi - lo))), (hi - lo) / n));
    }
    return tf.div(tf.sum(tf.mul(whole, sum)), tf.mul(tf.norm(whole), tf.norm(sum))).dataSync()[0] as number;
  });
}

type Mode = 'single' | 'split0' | 'split';
type Timing = { stepsPerSecond: number; cpuPerStep: number };

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const backend = await initBackend('wasm');
  const build: BuildOptions = { inputShape: [o.size, o.size, 1], classNames: ['normal', 'abnormal'], seed: 42 };
  const single = buildModel('screen', build);
  const alone = await DataParallelTrainer.create(buildModel('screen', build), { workers: 0 });
  const split = await DataParallelTrainer.create(buildModel('screen', build), {
    workers: o.workers,
    build: { name: 'screen', options: { ...build } },
  });
  const started = new Date().toISOString();
  const loadBefore = execSync('uptime').toString().trim();
  const rows: string[] = [];
  const ratios: number[] = [];
  const aloneRatios: number[] = [];
  const cpuRatios: number[] = [];
  try {
    const data = Array.from({ length: 4 }, (_, i) => batchOf(o, 100 + i));
    const probe = buildModel('screen', build);
    const cosines = data.map((b) => shardGradientCosine(probe, b.x, b.y, o.workers + 1));
    probe.dispose();
    let k = 0;
    const next = () => data[k++ % data.length] as { x: tf.Tensor4D; y: tf.Tensor2D };
    const steps: Record<Mode, () => Promise<unknown>> = {
      single: async () => {
        const b = next();
        await single.trainOnBatch(b.x, b.y);
      },
      split0: async () => {
        const b = next();
        await alone.trainOnBatch(b.x, b.y);
      },
      split: async () => {
        const b = next();
        await split.trainOnBatch(b.x, b.y);
      },
    };
    for (const m of ['single', 'split0', 'split'] as const) await timed(2, steps[m]); // warm-up: kernels compiled, workers ready
    for (let r = 1; r <= o.rounds; r++) {
      // Rotate which goes first, so a change of load during a round favours none.
      const order = (['single', 'split0', 'split'] as const).map((_, i, all) => all[(i + r) % all.length] as Mode);
      const res = {} as Record<Mode, Timing>;
      for (const m of order) res[m] = await timed(o.steps, steps[m]);
      ratios.push(res.split.stepsPerSecond / res.single.stepsPerSecond);
      aloneRatios.push(res.split0.stepsPerSecond / res.single.stepsPerSecond);
      cpuRatios.push(res.split.cpuPerStep / res.single.cpuPerStep);
      const row = `| ${r} | ${res.single.stepsPerSecond.toFixed(3)} | ${res.split0.stepsPerSecond.toFixed(3)} | ${res.split.stepsPerSecond.toFixed(3)} | ${(res.split.stepsPerSecond / res.single.stepsPerSecond).toFixed(2)} | ${res.single.cpuPerStep.toFixed(2)} | ${res.split0.cpuPerStep.toFixed(2)} | ${res.split.cpuPerStep.toFixed(2)} |`;
      rows.push(row);
      process.stdout.write(`${row}\n`);
    }
    tf.dispose(data.flatMap((b) => [b.x, b.y]));
    const loadAfter = execSync('uptime').toString().trim();
    const shard = Math.ceil(o.batch / (o.workers + 1));
    const report = [
      '# Data-parallel training steps of the screening CNN',
      '',
      `\`npm run bench:dp -- --rounds ${o.rounds} --steps ${o.steps} --batch ${o.batch} --size ${o.size} --workers ${o.workers}\`, started ${started}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${backend.name} (${backend.detail}).`,
      '',
      `Load before: \`${loadBefore}\``,
      `Load after: \`${loadAfter}\``,
      '',
      `The \`screen\` model at ${o.size}x${o.size}, batch ${o.batch}, ${o.steps} steps of each per round, the order rotating: single-thread steps (model.trainOnBatch, what training runs), the split step on the main thread alone (0 workers: the cost of the split code path), and the split step with ${o.workers} worker thread${o.workers === 1 ? '' : 's'}. CPU is the whole process's (every thread) per step.`,
      '',
      '| round | single steps/s | split, 0 workers, steps/s | split, ' +
        o.workers +
        ' worker(s), steps/s | ratio split / single | single CPU s/step | split 0 CPU s/step | split CPU s/step |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
      `Median ratio (split with ${o.workers} worker(s) / single, steps per second): **${median(ratios).toFixed(2)}** (range ${Math.min(...ratios).toFixed(2)} to ${Math.max(...ratios).toFixed(2)}); split with 0 workers / single: ${median(aloneRatios).toFixed(2)}.`,
      `Median CPU per step, split / single: ${median(cpuRatios).toFixed(2)}.`,
      '',
      `Batch norm per shard: cosine between the whole batch's gradient and the mean of the gradients of ${o.workers + 1} shards of ${shard} images (each normalised by its own statistics), at the initial weights, on ${cosines.length} batches: ${cosines.map((c) => c.toFixed(3)).join(', ')}. The moving averages are updated from the main thread's shard only.`,
      '',
    ].join('\n');
    const out = path.join(__dirname, '..', '..', 'bench', 'results', 'data-parallel.md');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, report);
    process.stdout.write(`\n${report}\nwritten to ${out}\n`);
  } finally {
    await alone.dispose();
    await split.dispose();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
