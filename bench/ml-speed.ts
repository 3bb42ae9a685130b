/**
 * Training and inference speed of the peer CNN, tfjs against PyTorch on the same machine in one run.
 *
 *   npm run bench:speed -- [--batches 200] [--threads 2] [--engines torch,torch-1t,wasm,wasm-dp,wasm-mt,cpu]
 *     [--train-batches 32,64,256] [--infer-batches 64,256,1000] [--rounds 1]
 *     [--out bench/results/ml-speed.md | --no-write] [--note <text>]
 *
 * Model (the speed peer of docs/architecture.md): conv 3x3x16 relu, maxpool 2, conv 3x3x32 relu, maxpool 2, dense 64 relu,
 * dense 10 softmax; Adam 1e-3; batch 64; Fashion-MNIST from /usr/share/datasets/fashion-mnist
 * (random data of the same shape when it is missing). Each engine runs in its own process, one
 * after the other (tfjs has one backend per process): warm-up batches, then `--batches` timed
 * training steps of batch 64, and as many images at each other size of `--train-batches` (a fresh
 * model each), then inference with the batch-64 model over the 10k test images at each size of
 * `--infer-batches`. Every engine runs every batch size, and engines are compared at each one's
 * best inference batch (PyTorch is several times slower at 1,000 than at 256, tfjs is not);
 * training is compared at batch 64 for every engine (the batch size changes the optimisation),
 * with each engine's best training batch and the best-vs-best ratio beside it.
 *   torch    bench/torch_peer.py, torch.set_num_threads(--threads): the peer the bars refer to
 *   torch-1t the same on 1 thread (on a busy machine PyTorch's 2 threads can be far slower than 1)
 *   wasm     tfjs-backend-wasm SIMD + the project kernels (@image-triage/tfjs-wasm-kernels), 1 thread (the default backend)
 *   wasm-dp  wasm with data-parallel steps: the batch split with --threads - 1 worker threads
 *            (bench/dataParallel.ts); inference as wasm
 *   wasm-mt  wasm with the threaded SIMD build on --threads XNNPACK threads
 *   cpu      tfjs pure-JS backend, a few batches only (contrast)
 * Timings on a shared machine are noisy: read the ratios (measured minutes apart in one run), and
 * rerun with --rounds 2 to alternate the engines. Results (best of rounds) go to
 * bench/results/ml-speed.md with the date and load unless --no-write; --note adds a sentence there.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BackendName, initBackend } from '../src/ml/backend';
import { readIdx } from '../src/ml/data/idx';
import { DataParallelTrainer } from './dataParallel';
import { findPython } from './python';
import {
  BatchFigure,
  best,
  bestVsBest,
  combineRounds,
  finishRun,
  fmt,
  parseBatches,
  parseChoices,
  startRun,
  stepsAt,
  sweepTable,
} from './sweep';

const ENGINES = ['torch', 'torch-1t', 'wasm', 'wasm-dp', 'wasm-mt', 'cpu'] as const;
type Engine = (typeof ENGINES)[number];

interface Options {
  batches: number;
  cpuBatches: number;
  warmup: number;
  inferImages: number;
  trainBatches: number[];
  inferBatches: number[];
  threads: number;
  data: string;
  engines: Engine[];
  rounds: number;
  python: string | undefined;
  out: string | undefined;
  note: string | undefined;
}

interface EngineResult {
  engine: string;
  detail?: string;
  version?: string;
  threads?: number;
  data: string;
  /** Training at each batch size, batch 64 first. */
  train: BatchFigure[];
  infer: BatchFigure[];
  trainBatches: number;
  inferImages: number;
  finalLoss: number;
  testAccuracy: number;
}

const BATCH = 64;

function parseArgs(argv: string[]): Options & { engine?: Engine } {
  const o: Options & { engine?: Engine } = {
    batches: 200,
    cpuBatches: 3,
    warmup: 10,
    inferImages: 10000,
    trainBatches: [32, 64, 256],
    inferBatches: [64, 256, 1000],
    threads: 2,
    data: '/usr/share/datasets/fashion-mnist',
    engines: ['torch', 'torch-1t', 'wasm', 'wasm-dp', 'wasm-mt', 'cpu'],
    rounds: 1,
    python: process.env.TRIAGE_PYTHON,
    out: path.join(__dirname, '..', '..', 'bench', 'results', 'ml-speed.md'),
    note: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[i + 1];
    const int = (): number => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${key} expects a non-negative integer, got ${value}`);
      i++;
      return n;
    };
    switch (key) {
      case '--batches':
        o.batches = int();
        break;
      case '--cpu-batches':
        o.cpuBatches = int();
        break;
      case '--warmup':
        o.warmup = int();
        break;
      case '--infer-images':
        o.inferImages = int();
        break;
      case '--threads':
        o.threads = int();
        break;
      case '--rounds':
        o.rounds = int();
        break;
      case '--data':
        o.data = String(value);
        i++;
        break;
      case '--python':
        o.python = String(value);
        i++;
        break;
      case '--train-batches':
        o.trainBatches = parseBatches(String(key), value);
        i++;
        break;
      case '--infer-batches':
        o.inferBatches = parseBatches(String(key), value);
        i++;
        break;
      case '--out':
        o.out = String(value);
        i++;
        break;
      case '--no-write':
        o.out = undefined;
        break;
      case '--note':
        o.note = String(value);
        i++;
        break;
      case '--engines':
        o.engines = parseChoices(value, ENGINES, 'engine');
        i++;
        break;
      case '--engine':
        o.engine = value as Engine;
        i++;
        break;
      default:
        throw new Error(`unknown option ${key}`);
    }
  }
  return o;
}

interface Split {
  x: Uint8Array;
  y: Uint8Array;
  n: number;
}

async function loadData(
  dir: string,
  trainNeeded: number,
  testNeeded: number,
): Promise<{ train: Split; test: Split; data: string }> {
  const files = [
    'train-images-idx3-ubyte.gz',
    'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz',
    't10k-labels-idx1-ubyte.gz',
  ].map((f) => path.join(dir, f));
  if (files.every((f) => fs.existsSync(f))) {
    const [xi, yi, xt, yt] = await Promise.all(files.map((f) => readIdx(f)));
    const split = (x: typeof xi, y: typeof yi): Split => ({
      x: x!.data as Uint8Array,
      y: y!.data as Uint8Array,
      n: x!.shape[0] ?? 0,
    });
    return { train: split(xi, yi), test: split(xt, yt), data: 'fashion-mnist' };
  }
  let seed = 12345;
  const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 16777216;
  const make = (n: number): Split => ({
    x: Uint8Array.from({ length: n * 784 }, () => Math.floor(rand() * 256)),
    y: Uint8Array.from({ length: n }, () => Math.floor(rand() * 10)),
    n,
  });
  return { train: make(trainNeeded), test: make(testNeeded), data: 'random' };
}

function peerModel(): tf.Sequential {
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 16, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 64, activation: 'relu' }),
      tf.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  m.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
  return m;
}

function batchTensors(
  s: Split,
  idx: ArrayLike<number>,
  start: number,
  size: number,
): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const xs = new Float32Array(size * 784);
  const ys = new Int32Array(size);
  for (let b = 0; b < size; b++) {
    const i = idx[(start + b) % idx.length] as number;
    const src = i * 784;
    for (let p = 0; p < 784; p++) xs[b * 784 + p] = (s.x[src + p] as number) / 255;
    ys[b] = s.y[i] as number;
  }
  const x = tf.tensor4d(xs, [size, 28, 28, 1]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(ys, 'int32'), 10).toFloat() as tf.Tensor2D);
  return { x, y };
}

/** Child mode: one tfjs engine, one JSON line on stdout. */
async function runTfjs(engine: Exclude<Engine, 'torch'>, o: Options): Promise<EngineResult> {
  const backend: BackendName = engine === 'cpu' ? 'cpu' : 'wasm';
  const info = await initBackend(backend, undefined, engine === 'wasm-mt' ? { wasmThreads: o.threads } : {});
  const batches = engine === 'cpu' ? o.cpuBatches : o.batches;
  const warmup = engine === 'cpu' ? 1 : o.warmup;
  const inferImages = engine === 'cpu' ? Math.min(o.inferImages, 1000) : o.inferImages;
  const trainSizes = [BATCH, ...o.trainBatches.filter((b, i, all) => b !== BATCH && all.indexOf(b) === i)];
  const trainNeeded = Math.max(...trainSizes.map((bs) => (warmup + stepsAt(bs, BATCH, batches)) * bs));
  const { train, test, data } = await loadData(o.data, trainNeeded, inferImages);
  const order = Array.from({ length: train.n }, (_, i) => i);
  let seed = 7;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const cpuSeconds = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  /** A fresh model trained at batch `bs`: warm-up, then as many images as `batches` steps of batch 64. */
  const trainAt = async (bs: number): Promise<{ model: tf.Sequential; figure: BatchFigure; loss: number }> => {
    const model = peerModel();
    const trainer =
      engine === 'wasm-dp'
        ? await DataParallelTrainer.create(model, { workers: Math.max(1, o.threads - 1) })
        : undefined;
    const step = async (i: number): Promise<number> => {
      const { x, y } = batchTensors(train, order, i * bs, bs);
      const loss =
        trainer !== undefined ? await trainer.trainOnBatch(x, y) : ((await model.trainOnBatch(x, y)) as number);
      tf.dispose([x, y]);
      return loss;
    };
    for (let i = 0; i < warmup; i++) await step(i);
    let loss = NaN;
    const steps = stepsAt(bs, BATCH, batches);
    const c0 = cpuSeconds();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) loss = await step(warmup + i);
    const figure = {
      batch: bs,
      imagesPerSec: (steps * bs) / ((performance.now() - t0) / 1000),
      imagesPerCpuSec: (steps * bs) / (cpuSeconds() - c0),
    };
    await trainer?.dispose();
    return { model, figure, loss };
  };
  const ref = await trainAt(BATCH);
  const model = ref.model;
  const trainFigures = [ref.figure];
  for (const bs of trainSizes.slice(1)) {
    const other = await trainAt(bs);
    other.model.dispose();
    trainFigures.push(other.figure);
  }

  const n = Math.min(inferImages, test.n);
  const testIdx = Array.from({ length: n }, (_, i) => i);
  const inferFigures: BatchFigure[] = [];
  let correct = 0;
  for (const inferBatch of o.inferBatches) {
    const bs = Math.min(inferBatch, n);
    tf.tidy(() => {
      const { x } = batchTensors(test, testIdx, 0, bs);
      (model.predict(x, { batchSize: bs }) as tf.Tensor).dataSync();
    });
    correct = 0;
    const c1 = cpuSeconds();
    const t1 = performance.now();
    for (let s = 0; s < n; s += bs) {
      const size = Math.min(bs, n - s);
      const { x, y } = batchTensors(test, testIdx, s, size);
      const pred = tf.tidy(() => (model.predict(x, { batchSize: bs }) as tf.Tensor).argMax(1));
      const p = pred.dataSync();
      for (let k = 0; k < size; k++) if (p[k] === test.y[s + k]) correct++;
      tf.dispose([x, y, pred]);
    }
    inferFigures.push({
      batch: inferBatch,
      imagesPerSec: n / ((performance.now() - t1) / 1000),
      imagesPerCpuSec: n / (cpuSeconds() - c1),
    });
  }
  return {
    engine,
    detail: `${info.name}: ${info.detail}${engine === 'wasm-dp' ? `; training split over ${Math.max(1, o.threads - 1) + 1} threads` : ''}`,
    threads: info.threads ?? 1,
    data,
    train: trainFigures,
    infer: inferFigures,
    trainBatches: batches,
    inferImages: n,
    finalLoss: ref.loss,
    testAccuracy: correct / n,
  };
}

function runChild(engine: Engine, o: Options, argv: string[]): EngineResult | string {
  let cmd: string;
  let args: string[];
  if (engine === 'torch' || engine === 'torch-1t') {
    const { python, why } = findPython(o.python);
    if (python === undefined) return why ?? 'no python';
    cmd = python;
    args = [
      path.join(__dirname, '..', '..', 'bench', 'torch_peer.py'),
      '--batches',
      String(o.batches),
      '--warmup',
      String(o.warmup),
      '--threads',
      engine === 'torch' ? String(o.threads) : '1',
      '--infer-images',
      String(o.inferImages),
      '--train-batches',
      o.trainBatches.join(','),
      '--infer-batches',
      o.inferBatches.join(','),
      '--data',
      o.data,
    ];
    if (!fs.existsSync(args[0] as string)) args[0] = path.join(__dirname, 'torch_peer.py');
  } else {
    cmd = process.execPath;
    args = [__filename, ...argv, '--engine', engine];
  }
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const line = r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  if (r.status !== 0 || line === undefined)
    return `${engine} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
  return { ...(JSON.parse(line) as EngineResult), engine };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  if (o.engine !== undefined) {
    if (o.engine === 'torch' || o.engine === 'torch-1t' || !(ENGINES as readonly string[]).includes(o.engine))
      throw new Error(`--engine expects wasm, wasm-dp, wasm-mt or cpu`);
    process.stdout.write(JSON.stringify(await runTfjs(o.engine, o)) + '\n');
    return;
  }
  const { started, loadStart, lines, say } = startRun();
  const dataNote = fs.existsSync(path.join(o.data, 'train-images-idx3-ubyte.gz'))
    ? `Fashion-MNIST (${o.data})`
    : `random data (Fashion-MNIST not found in ${o.data}; install dataset-fashion-mnist)`;
  const trainSizes = [BATCH, ...o.trainBatches.filter((b, i, all) => b !== BATCH && all.indexOf(b) === i)];
  say(
    `peer CNN, Adam 1e-3; training: ${o.batches} timed steps of batch ${BATCH} after ${o.warmup} warm-up (cpu: ${o.cpuBatches}), and as many images at batch ${trainSizes.slice(1).join(', ') || '(no other)'} (a fresh model each); inference over ${o.inferImages} test images (cpu: 1,000) at batch ${o.inferBatches.join(', ')}; data: ${dataNote}`,
  );
  say(
    `machine: ${os.cpus().length} logical cores, load average ${loadStart} at start (other work on the machine slows multi-threaded engines most)`,
  );
  const results = new Map<Engine, EngineResult[]>();
  const notes: string[] = [];
  const byBatch = (figs: BatchFigure[]): string => figs.map((f) => `${f.batch}: ${fmt(f.imagesPerSec)}`).join(', ');
  for (let round = 0; round < Math.max(1, o.rounds); round++) {
    for (const engine of o.engines) {
      const r = runChild(engine, o, argv);
      if (typeof r === 'string') {
        if (round === 0) notes.push(r);
        continue;
      }
      results.set(engine, [...(results.get(engine) ?? []), r]);
      console.log(
        `  ${engine.padEnd(8)} train img/s by batch ${byBatch(r.train)}   infer img/s by batch ${byBatch(r.infer)}   loss ${r.finalLoss.toFixed(3)}  test acc ${(100 * r.testAccuracy).toFixed(1)}%   ${r.detail ?? `torch ${r.version} (${r.threads} threads)`}`,
      );
    }
  }
  // Best of rounds, per engine and batch size.
  const summary = new Map<Engine, { train: BatchFigure[]; infer: BatchFigure[]; detail: string }>();
  for (const e of o.engines) {
    const rs = results.get(e);
    if (rs === undefined) continue;
    const max = (vs: number[]): number => Math.max(...vs);
    summary.set(e, {
      train: combineRounds(
        rs.map((r) => r.train),
        max,
      ),
      infer: combineRounds(
        rs.map((r) => r.infer),
        max,
      ),
      detail: rs[0]?.detail ?? `PyTorch ${rs[0]?.version ?? ''}, ${rs[0]?.threads ?? '?'} threads`,
    });
  }
  say('engines:');
  for (const [engine, s] of summary) say(`  ${engine.padEnd(8)} ${s.detail}`);
  const rows = (k: 'train' | 'infer') => [...summary].map(([engine, s]) => ({ engine, figures: s[k] }));
  const tables = [
    sweepTable(`training${o.rounds > 1 ? ', best of rounds' : ''}`, trainSizes, rows('train'), BATCH),
    sweepTable(`inference${o.rounds > 1 ? ', best of rounds' : ''}`, o.inferBatches, rows('infer')),
  ];
  for (const t of tables) console.log(['', ...t].join('\n'));
  const peers = (['torch', 'torch-1t'] as const).filter((p) => summary.has(p));
  if (peers.length === 0) say('no PyTorch figures in this run: absolute numbers only');
  const atRef = (figs: BatchFigure[]): BatchFigure | undefined => figs.find((f) => f.batch === BATCH);
  for (const peer of peers) {
    const threads = peer === 'torch' ? o.threads : 1;
    const p = summary.get(peer);
    if (p === undefined) continue;
    say('');
    say(
      `ratios vs PyTorch on ${threads} thread${threads === 1 ? '' : 's'}${peer === 'torch' ? ' [the bars: training >= 0.5, inference >= 1.0]' : ''}: inference at each engine's best batch; training at batch ${BATCH} for both (the batch size changes the optimisation: every engine trains at the same one), then at each one's best batch`,
    );
    for (const [e, s] of summary) {
      if (e === peer) continue;
      const inf = bestVsBest({ name: e, figures: s.infer }, { name: peer, figures: p.infer });
      const trBest = bestVsBest({ name: e, figures: s.train }, { name: peer, figures: p.train });
      const [mt, pt] = [atRef(s.train), atRef(p.train)];
      const bestCpu = (figs: BatchFigure[]): number => Math.max(...figs.map((f) => f.imagesPerCpuSec));
      if (inf === undefined || trBest === undefined || mt === undefined || pt === undefined) continue;
      say(`  ${e.padEnd(8)} inference ${inf.text}`);
      say(
        `  ${''.padEnd(8)} training ${(mt.imagesPerSec / pt.imagesPerSec).toFixed(2)} at batch ${BATCH}; best vs best ${trBest.text}`,
      );
      say(
        `  ${''.padEnd(8)} per CPU-second (robust to other load, blind to idle cores): training ${(mt.imagesPerCpuSec / pt.imagesPerCpuSec).toFixed(2)} at batch ${BATCH}, inference ${(bestCpu(s.infer) / bestCpu(p.infer)).toFixed(2)} best vs best`,
      );
    }
    const pb = best(p.infer);
    const worst = p.infer.reduce(
      (a, b) => (b.imagesPerSec < a.imagesPerSec ? b : a),
      p.infer[0] ?? { batch: 0, imagesPerSec: NaN, imagesPerCpuSec: NaN },
    );
    if (pb !== undefined && pb.batch !== worst.batch)
      say(
        `  ${peer}'s inference varies ${(pb.imagesPerSec / worst.imagesPerSec).toFixed(1)}x with the batch size (${fmt(pb.imagesPerSec)} img/s at ${pb.batch}, ${fmt(worst.imagesPerSec)} at ${worst.batch}): a ratio at one fixed batch would say more about the batch than the engines`,
      );
  }
  finishRun(say, {
    npmScript: 'bench:speed',
    argv,
    title: 'Peer CNN speed: tfjs engines against PyTorch, batch sizes swept',
    out: o.out,
    note: o.note,
    started,
    loadStart,
    notes,
    lines,
    tables,
  });
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
