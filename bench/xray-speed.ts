/**
 * Training and inference speed of the screening CNN ('screen', src/ml/models.ts) on real
 * radiographs: tfjs on the wasm backend (the project's kernels; training on one thread, inference
 * the way the product scores uploads: ml/inference.ts's InferencePool on --threads threads, batch
 * norm and relu folded into the convolutions, the 3x3 ones as Winograd F(4x4, 3x3)) against
 * PyTorch (bench/torch_screen.py, the same architecture, batch and optimiser, --threads threads)
 * in one run.
 *
 *   npm run bench:xray -- <folder with one subfolder per class> [--images 320] [--size 128]
 *     [--batches 20] [--warmup 3] [--train-batches 16,32,64] [--infer-batches 16,32,64,256]
 *     [--rounds 3] [--threads 2] [--epochs 15] [--engines wasm,torch[,torch-1t]]
 *     [--python /usr/bin/python3] [--out bench/results/xray-speed.md | --no-write] [--note <text>]
 *
 * The parent decodes `--images` radiographs (spread over the classes, in name order) with sharp
 * to size x size grey, the way the xray profile prepares an upload (greyscale, resized to the
 * model's input, scaled to [0, 1]), writes them to a temporary file, and runs each engine in its
 * own process, alternating the order every round: `--batches` timed training steps of batch 32
 * (Adam 1e-3) after `--warmup`, and as many images at each other size of `--train-batches` (a
 * fresh model each), then inference with the batch-32 model over all the images at each batch size
 * of `--infer-batches`. Each engine's figure is its median over the rounds. Inference compares each
 * engine's best batch size; training compares both engines at batch 32 (the batch size changes the
 * optimisation, so the project trains every engine at the same one), and notes each engine's best
 * batch and the best-vs-best ratio beside it. The bars: training >= 0.8x PyTorch on 2 threads,
 * inference >= 1.5x.
 * torch-1t (PyTorch on one thread) is for contrast: on a busy machine, PyTorch's two OpenMP
 * threads wait for each other and can be slower than one.
 * The estimate of wall time to train 5,216 images x E epochs is decoding (at the measured rate)
 * plus E epochs at the measured wasm training speed; validation passes are not included.
 * Results go to bench/results/xray-speed.md (date, load, figures) unless --no-write.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend';
import { InferencePool } from '../src/ml/inference';
import { buildModel } from '../src/ml/models';
import { findPython } from './python';
import {
  BatchFigure,
  bestVsBest,
  combineRounds,
  finishRun,
  fmt,
  median,
  parseBatches,
  parseChoices,
  startRun,
  stepsAt,
  sweepTable,
} from './sweep';

const BATCH = 32;
const ENGINES = ['wasm', 'torch', 'torch-1t'] as const;
type Engine = (typeof ENGINES)[number];

interface Options {
  folder: string;
  images: number;
  size: number;
  batches: number;
  warmup: number;
  trainBatches: number[];
  inferBatches: number[];
  rounds: number;
  threads: number;
  epochs: number;
  python: string | undefined;
  out: string | undefined;
  note: string | undefined;
  engines: Engine[];
  engine?: Engine;
  input?: string;
}

interface EngineResult {
  engine: Engine;
  detail: string;
  /** Training at each batch size, batch 32 first. */
  train: BatchFigure[];
  finalLoss: number;
  infer: BatchFigure[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    folder: '',
    images: 320,
    size: 128,
    batches: 20,
    warmup: 3,
    trainBatches: [16, 32, 64],
    inferBatches: [16, 32, 64, 256],
    rounds: 3,
    threads: 2,
    epochs: 15,
    python: process.env.TRIAGE_PYTHON,
    out: path.join(__dirname, '..', '..', 'bench', 'results', 'xray-speed.md'),
    note: undefined,
    engines: ['wasm', 'torch'],
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i] as string;
    const value = argv[i + 1];
    const int = (): number => {
      const n = Number(value);
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${key} expects a positive integer, got ${value}`);
      i++;
      return n;
    };
    switch (key) {
      case '--images':
        o.images = int();
        break;
      case '--size':
        o.size = int();
        break;
      case '--batches':
        o.batches = int();
        break;
      case '--warmup':
        o.warmup = int();
        break;
      case '--rounds':
        o.rounds = int();
        break;
      case '--threads':
        o.threads = int();
        break;
      case '--epochs':
        o.epochs = int();
        break;
      case '--train-batches':
        o.trainBatches = parseBatches(key, value);
        i++;
        break;
      case '--infer-batches':
        o.inferBatches = parseBatches(key, value);
        i++;
        break;
      case '--note':
        o.note = String(value);
        i++;
        break;
      case '--python':
        o.python = String(value);
        i++;
        break;
      case '--out':
        o.out = String(value);
        i++;
        break;
      case '--no-write':
        o.out = undefined;
        break;
      case '--engines':
        o.engines = parseChoices(value, ENGINES, 'engine');
        i++;
        break;
      case '--engine':
        o.engine = value as Engine;
        i++;
        break;
      case '--input':
        o.input = String(value);
        i++;
        break;
      default:
        if (key.startsWith('--') || o.folder !== '') throw new Error(`unknown option ${key}`);
        o.folder = key;
    }
  }
  return o;
}

/** The decoded images: n x size x size uint8, labels, class names. */
interface Decoded {
  pixels: Uint8Array;
  labels: Uint8Array;
  classNames: string[];
  n: number;
  decodeSeconds: number;
}

const IMAGE_EXT = /\.(jpe?g|png|webp|tiff?|gif|bmp)$/i;

async function decodeFolder(folder: string, wanted: number, size: number): Promise<Decoded> {
  const classNames = fs
    .readdirSync(folder, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  if (classNames.length < 2)
    throw new Error(`${folder}: expected one subfolder per class (at least two), found ${classNames.length}`);
  const lists = classNames.map((c) =>
    fs
      .readdirSync(path.join(folder, c))
      .filter((f) => IMAGE_EXT.test(f))
      .sort()
      .map((f) => path.join(folder, c, f)),
  );
  // Round-robin over the classes, so that every class is there whatever the count.
  const files: { file: string; label: number }[] = [];
  for (let i = 0; files.length < wanted && lists.some((l) => i < l.length); i++) {
    lists.forEach((l, label) => {
      const file = l[i];
      if (file !== undefined && files.length < wanted) files.push({ file, label });
    });
  }
  if (files.length < BATCH) throw new Error(`${folder}: ${files.length} images, need at least ${BATCH}`);
  const pixels = new Uint8Array(files.length * size * size);
  const labels = new Uint8Array(files.length);
  const t0 = performance.now();
  for (const [i, { file, label }] of files.entries()) {
    const raw = await sharp(file).greyscale().resize(size, size, { fit: 'fill' }).raw().toBuffer();
    if (raw.length !== size * size) throw new Error(`${file}: decoded to ${raw.length} bytes, expected ${size * size}`);
    pixels.set(raw, i * size * size);
    labels[i] = label;
  }
  return { pixels, labels, classNames, n: files.length, decodeSeconds: (performance.now() - t0) / 1000 };
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Child mode: the wasm engine on the decoded file; one JSON line on stdout. */
async function runWasm(o: Options): Promise<EngineResult> {
  const info = await initBackend('wasm');
  const meta = JSON.parse(fs.readFileSync(`${o.input}.json`, 'utf8')) as {
    n: number;
    size: number;
    classNames: string[];
  };
  const { n, size, classNames } = meta;
  const pixels = new Uint8Array(fs.readFileSync(`${o.input}.images`));
  const labels = new Uint8Array(fs.readFileSync(`${o.input}.labels`));
  const px = size * size;
  const floats = (start: number, count: number): Float32Array => {
    const out = new Float32Array(count * px);
    for (let i = 0; i < count * px; i++) out[i] = (pixels[start * px + i] as number) / 255;
    return out;
  };
  /** A fresh model trained at batch `bs`: warm-up, then as many images as --batches steps of batch 32. */
  const trainAt = async (bs: number): Promise<{ model: tf.LayersModel; figure: BatchFigure; loss: number }> => {
    const model = buildModel('screen', { inputShape: [size, size, 1], classNames });
    const step = async (i: number): Promise<number> => {
      const s = (i * bs) % Math.max(1, n - bs + 1);
      const count = Math.min(bs, n - s);
      const x = tf.tensor4d(floats(s, count), [count, size, size, 1]);
      const y = tf.tidy(() =>
        tf.oneHot(tf.tensor1d(Array.from(labels.subarray(s, s + count)), 'int32'), classNames.length).toFloat(),
      );
      const out = await model.trainOnBatch(x, y);
      tf.dispose([x, y]);
      return Array.isArray(out) ? (out[0] as number) : out;
    };
    for (let i = 0; i < o.warmup; i++) await step(i);
    let loss = NaN;
    const steps = stepsAt(bs, BATCH, o.batches);
    const c0 = cpuSeconds();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) loss = await step(o.warmup + i);
    const images = steps * bs;
    return {
      model,
      figure: {
        batch: bs,
        imagesPerSec: images / ((performance.now() - t0) / 1000),
        imagesPerCpuSec: images / (cpuSeconds() - c0),
      },
      loss,
    };
  };
  const ref = await trainAt(BATCH);
  const model = ref.model;
  const train = [ref.figure];
  for (const bs of o.trainBatches) {
    if (train.some((f) => f.batch === bs)) continue;
    const other = await trainAt(bs);
    other.model.dispose();
    train.push(other.figure);
  }

  // Inference as the product scores uploads (registry/modelCache.ts): an InferencePool of
  // --threads threads (TRIAGE_INFER_THREADS), each running ml/inference.ts's forward pass.
  const pool = new InferencePool(tf, model, [size, size, 1], { threads: o.threads, backend: 'wasm' });
  await pool.started;
  const threads = pool.threads;
  const all = floats(0, n);
  // The scoring path's probabilities against model.predict's (tfjs-layers: conv, batch norm, relu).
  const checked = Math.min(n, 32);
  const fast = await pool.predict(all.subarray(0, checked * px), checked);
  const slow = tf.tidy(() =>
    (model.predict(tf.tensor4d(all.subarray(0, checked * px), [checked, size, size, 1])) as tf.Tensor).dataSync(),
  );
  const drift = fast.reduce((d, v, i) => Math.max(d, Math.abs(v - (slow[i] as number))), 0);
  const infer: BatchFigure[] = [];
  for (const bs of o.inferBatches) {
    const run = async (s: number): Promise<void> => {
      const count = Math.min(bs, n - s);
      await pool.predict(all.subarray(s * px, (s + count) * px), count);
    };
    await run(0);
    const c1 = cpuSeconds();
    const t1 = performance.now();
    for (let s = 0; s < n; s += bs) await run(s);
    infer.push({
      batch: bs,
      imagesPerSec: n / ((performance.now() - t1) / 1000),
      imagesPerCpuSec: n / (cpuSeconds() - c1),
    });
  }
  pool.dispose();
  return {
    engine: 'wasm',
    detail: `tfjs ${tf.version.tfjs} ${info.name}, ${info.simd === true ? 'SIMD' : 'no SIMD'}, project kernels; training: 1 thread; inference as the product scores uploads (ml/inference.ts): ${threads} thread${threads === 1 ? '' : 's'}, batch norm + relu folded into the convs, 3x3 convs as Winograd F(4x4,3x3), probabilities within ${drift.toExponential(1)} of model.predict`,
    train,
    finalLoss: ref.loss,
    infer,
  };
}

function runChild(engine: Engine, o: Options, input: string, classes: number): EngineResult | string {
  let cmd: string;
  let args: string[];
  const common = [
    '--batches',
    String(o.batches),
    '--warmup',
    String(o.warmup),
    '--train-batches',
    o.trainBatches.join(','),
    '--infer-batches',
    o.inferBatches.join(','),
  ];
  if (engine === 'torch' || engine === 'torch-1t') {
    const { python, why } = findPython(o.python);
    if (python === undefined) return why ?? 'no python';
    cmd = python;
    let script = path.join(__dirname, '..', '..', 'bench', 'torch_screen.py');
    if (!fs.existsSync(script)) script = path.join(__dirname, 'torch_screen.py');
    args = [
      script,
      '--images',
      `${input}.images`,
      '--labels',
      `${input}.labels`,
      '--size',
      String(o.size),
      '--classes',
      String(classes),
      '--batch-size',
      String(BATCH),
      '--threads',
      engine === 'torch' ? String(o.threads) : '1',
      ...common,
    ];
  } else {
    cmd = process.execPath;
    args = [__filename, '--engine', engine, '--input', input, '--threads', String(o.threads), ...common];
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

function minutes(seconds: number): string {
  return seconds >= 3600 ? `${(seconds / 3600).toFixed(1)} h` : `${(seconds / 60).toFixed(1)} min`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  if (o.engine !== undefined) {
    if (o.engine !== 'wasm' || o.input === undefined) throw new Error('--engine expects wasm, with --input');
    process.stdout.write(JSON.stringify(await runWasm(o)) + '\n');
    return;
  }
  if (o.folder === '') throw new Error('usage: npm run bench:xray -- <folder with one subfolder per class> [options]');
  const { started, loadStart, lines, say } = startRun();
  const data = await decodeFolder(o.folder, o.images, o.size);
  const decodeRate = data.n / data.decodeSeconds;
  say(
    `screening CNN ('screen'): ${o.size}x${o.size}x1, batch ${BATCH}, Adam 1e-3; ${data.n} radiographs from ${o.folder} (${data.classNames.join(', ')}), decoded with sharp at ${fmt(decodeRate)} img/s`,
  );
  say(
    `training: ${o.batches} timed steps of batch ${BATCH} after ${o.warmup} warm-up, and as many images at batch ${o.trainBatches.filter((b) => b !== BATCH).join(', ') || '(no other)'} (a fresh model each); inference over the ${data.n} images at batch ${o.inferBatches.join(', ')}; ${o.rounds} rounds, engines alternating; medians over rounds`,
  );
  say(`machine: ${os.cpus().length} logical cores, load average ${loadStart} at start`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xray-speed-'));
  const input = path.join(dir, 'data');
  fs.writeFileSync(`${input}.images`, data.pixels);
  fs.writeFileSync(`${input}.labels`, data.labels);
  fs.writeFileSync(`${input}.json`, JSON.stringify({ n: data.n, size: o.size, classNames: data.classNames }));
  const results = new Map<Engine, EngineResult[]>();
  const notes: string[] = [];
  try {
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? [...o.engines] : [...o.engines].reverse();
      for (const engine of order) {
        const r = runChild(engine, o, input, data.classNames.length);
        if (typeof r === 'string') {
          notes.push(`round ${round + 1}: ${r}`);
          continue;
        }
        results.set(engine, [...(results.get(engine) ?? []), r]);
        const byBatch = (figs: BatchFigure[]) => figs.map((f) => `${f.batch}: ${fmt(f.imagesPerSec)}`).join(', ');
        console.log(
          `  round ${round + 1} ${engine.padEnd(8)} train img/s by batch ${byBatch(r.train)}  infer img/s by batch ${byBatch(r.infer)}  loss ${r.finalLoss.toFixed(3)}  ${r.detail}`,
        );
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  interface Summary {
    train: BatchFigure[];
    infer: BatchFigure[];
    detail: string;
  }
  const summary = new Map<Engine, Summary>();
  for (const [engine, rs] of results) {
    summary.set(engine, {
      train: combineRounds(
        rs.map((r) => r.train),
        median,
      ),
      infer: combineRounds(
        rs.map((r) => r.infer),
        median,
      ),
      detail: rs[0]?.detail ?? '',
    });
  }
  const rows = (k: 'train' | 'infer') =>
    [...summary].map(([engine, s]) => ({ engine: `${engine}: ${s.detail}`, figures: s[k] }));
  const tables = [
    sweepTable('training', [BATCH, ...o.trainBatches], rows('train'), BATCH),
    sweepTable('inference', o.inferBatches, rows('infer')),
  ];
  for (const t of tables) console.log(['', ...t].join('\n'));
  const wasm = summary.get('wasm');
  say('');
  for (const peer of ['torch', 'torch-1t'] as const) {
    const torch = summary.get(peer);
    if (wasm === undefined || torch === undefined) continue;
    const at = (figs: BatchFigure[]) => figs.find((f) => f.batch === BATCH);
    const [wt, pt] = [at(wasm.train), at(torch.train)];
    if (wt === undefined || pt === undefined) continue;
    const tr = wt.imagesPerSec / pt.imagesPerSec;
    const inf = bestVsBest({ name: 'wasm', figures: wasm.infer }, { name: 'PyTorch', figures: torch.infer });
    const trBest = bestVsBest({ name: 'wasm', figures: wasm.train }, { name: 'PyTorch', figures: torch.train });
    const bars =
      peer === 'torch'
        ? [
            ` (bar >= 0.8: ${tr >= 0.8 ? 'met' : 'NOT met'})`,
            ` (bar >= 1.5: ${(inf?.ratio ?? 0) >= 1.5 ? 'met' : 'NOT met'})`,
          ]
        : ['', ''];
    say(`ratios wasm / ${torch.detail}: inference, best batch of each, ${inf?.text ?? '-'}${bars[1]}`);
    say(
      `  training at batch ${BATCH} for both (the batch size changes the optimisation: the same for every engine), ${tr.toFixed(2)}${bars[0]}; best batch of each, ${trBest?.text ?? '-'}`,
    );
    const cpuBest = (figs: BatchFigure[]) => Math.max(...figs.map((f) => f.imagesPerCpuSec));
    say(
      `  per CPU-second (less sensitive to other load): training at batch ${BATCH} ${(wt.imagesPerCpuSec / pt.imagesPerCpuSec).toFixed(2)}, inference best vs best ${(cpuBest(wasm.infer) / cpuBest(torch.infer)).toFixed(2)}`,
    );
  }
  if (wasm === undefined || ![...summary.keys()].some((e) => e !== 'wasm'))
    say('no ratio: an engine did not run (see the notes)');
  const wasmTrain = wasm?.train.find((f) => f.batch === BATCH)?.imagesPerSec;
  if (wasmTrain !== undefined) {
    const total = 5216;
    const decode = total / decodeRate;
    const est = [1, 5, 10, o.epochs].filter((e, i, a) => a.indexOf(e) === i).sort((a, b) => a - b);
    say(
      `estimated wall time to train ${total.toLocaleString('en-US')} images on wasm at batch ${BATCH}, ${fmt(wasmTrain)} img/s, decoding included (${minutes(decode)}), validation excluded: ` +
        est.map((e) => `${e} epoch${e === 1 ? '' : 's'} ${minutes(decode + (total * e) / wasmTrain)}`).join(', '),
    );
  }
  finishRun(say, {
    npmScript: 'bench:xray',
    argv,
    title: 'Screening CNN speed: tfjs wasm against PyTorch, batch sizes swept',
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
