/**
 * A model's forward pass for scoring, on the main thread and on worker threads.
 *
 * The tfjs wasm backend computes on one thread in Node. `InferencePool` splits a batch over
 * `threads` threads: the calling thread scores the first share itself while each worker thread (its
 * own tfjs, wasm backend with the project kernels, and a copy of the model, loaded from the model's
 * own artifacts) scores another share of the same batch; the shares are put back in order. Every
 * thread runs the same `forwardPass`, so the numbers are those of one thread.
 *
 * Workers start in the background: until one is ready the calling thread scores whole batches, so a
 * model is usable at once. A worker that fails (an error reply, a crash, an exit) is dropped with
 * a logged error and its share is scored on the calling thread, so no image of the batch is lost;
 * later batches use the threads that are left. Workers are unref'd (they never keep the process
 * alive) and terminated by `dispose`. Workers load the compiled modules under dist/
 * (src/util/compiled.ts); without them the pool scores on the calling thread only, and says so.
 */
import { Worker } from 'node:worker_threads';
import type * as tfTypes from '@tensorflow/tfjs';
import { compiledPath } from '../util/compiled';
import { WINOGRAD_KERNEL, winogradFilter, winogradFits } from '@image-triage/tfjs-wasm-kernels';

/** A forward pass for scoring; `dispose` frees the tensors it prepared. */
export interface Forward {
  (x: tfTypes.Tensor): tfTypes.Tensor;
  dispose(): void;
}

type Step = (x: tfTypes.Tensor) => tfTypes.Tensor;

function configOf(layer: tfTypes.layers.Layer): Record<string, unknown> {
  return layer.getConfig();
}

function allOnes(v: unknown): boolean {
  return v === undefined || v === 1 || (Array.isArray(v) && v.every((d) => d === 1));
}

/** Whether `layer` is a 2x2 / stride 2 max pool without padding, channels last. */
function isMaxPool2x2(layer: tfTypes.layers.Layer | undefined): boolean {
  if (layer === undefined || layer.getClassName() !== 'MaxPooling2D') return false;
  const c = configOf(layer);
  const two = (v: unknown): boolean => Array.isArray(v) && v.length === 2 && v[0] === 2 && v[1] === 2;
  return (
    two(c.poolSize) &&
    (c.strides == null || two(c.strides)) &&
    c.padding === 'valid' &&
    (c.dataFormat ?? 'channelsLast') === 'channelsLast'
  );
}

/** How many layers from `i` make one convolution block, and the block's step; undefined: not one. */
function convBlock(
  tf: typeof tfTypes,
  layers: readonly tfTypes.layers.Layer[],
  i: number,
  owned: tfTypes.Tensor[],
): { take: number; step: Step } | undefined {
  const conv = layers[i] as tfTypes.layers.Layer;
  if (conv.getClassName() !== 'Conv2D') return undefined;
  const c = configOf(conv);
  const strides = c.strides as [number, number];
  const padding = c.padding as string;
  const outShape = conv.outputShape as (number | null)[];
  if (
    c.dataFormat !== 'channelsLast' ||
    !allOnes(c.dilationRate) ||
    (padding !== 'same' && padding !== 'valid') ||
    outShape.length !== 4
  )
    return undefined;
  let activation = c.activation as string;
  let take = 1;
  const weights = conv.getWeights();
  const kernel = weights[0];
  if (kernel === undefined) return undefined;
  const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
  const shift = new Float64Array(cout);
  const scale = new Float64Array(cout).fill(1);
  if (c.useBias === true && weights[1] !== undefined) shift.set(weights[1].dataSync());
  // Batch normalisation (at inference, an affine map per channel) after a linear convolution
  // folds into its filter and bias: w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
  const bn = layers[i + 1];
  if (activation === 'linear' && bn !== undefined && bn.getClassName() === 'BatchNormalization') {
    const b = configOf(bn);
    const axis = Array.isArray(b.axis) ? (b.axis as number[]) : [b.axis as number];
    if (axis.length === 1 && (axis[0] === -1 || axis[0] === 3)) {
      const w = bn.getWeights().map((t) => t.dataSync());
      let k = 0;
      const gamma = b.scale === false ? undefined : w[k++];
      const beta = b.center === false ? undefined : w[k++];
      const mean = w[k++];
      const variance = w[k];
      if (mean !== undefined && variance !== undefined) {
        for (let o = 0; o < cout; o++) {
          const s =
            (gamma === undefined ? 1 : (gamma[o] as number)) /
            Math.sqrt((variance[o] as number) + (b.epsilon as number));
          shift[o] = ((shift[o] as number) - (mean[o] as number)) * s + (beta === undefined ? 0 : (beta[o] as number));
          scale[o] = s;
        }
        take = 2;
        const next = layers[i + 2];
        if (next !== undefined && next.getClassName() === 'Activation') {
          const a = configOf(next).activation;
          if (a === 'relu' || a === 'linear') {
            activation = a;
            take = 3;
          }
        }
      }
    }
  }
  if (activation !== 'relu' && activation !== 'linear') return undefined;
  const w = Float32Array.from(kernel.dataSync(), (v, k) => v * (scale[k % cout] as number));
  const filter = tf.tensor4d(w, [kh, kw, cin, cout]);
  const bias = tf.tensor1d(Float32Array.from(shift));
  owned.push(filter, bias);
  const relu = activation === 'relu';
  const [oh, ow] = [outShape[1] as number, outShape[2] as number];
  if (
    kh === 3 &&
    kw === 3 &&
    allOnes(strides) &&
    winogradFits(cin, cout, oh, ow) &&
    tf.getKernel(WINOGRAD_KERNEL, tf.getBackend()) !== undefined
  ) {
    const u = tf.tensor3d(winogradFilter(w, cin, cout), [36, cin, cout]);
    owned.push(u);
    // A 2x2 / stride 2 max pool after the block is taken into the kernel's output transform.
    const pool = isMaxPool2x2(layers[i + take]);
    return {
      take: take + (pool ? 1 : 0),
      step: (x) =>
        tf.engine().runKernel<tfTypes.Tensor>(WINOGRAD_KERNEL, { x, u, filter, bias }, { pad: padding, relu, pool }),
    };
  }
  return {
    take,
    step: (x) =>
      tf.fused.conv2d({
        x: x as tfTypes.Tensor4D,
        filter,
        bias,
        strides,
        pad: padding,
        dataFormat: 'NHWC',
        activation: relu ? 'relu' : 'linear',
      }),
  };
}

/**
 * The model's forward pass on a concrete batch, for scoring. For a Sequential model whose input
 * shape is `inputShape`, its layers one after the other (what `model.predict` computes, without what
 * predict adds around it per call: input checks, slicing into batches of 32 and concatenating, the
 * symbolic executor, Layer.apply's name scopes and bookkeeping, which cost as much as a third of the
 * CPU time of a batch of one), with every convolution prepared once: a batch normalisation and a
 * relu after it are folded into its filter and bias (one fused convolution instead of three
 * passes), and a 3x3 stride-1 convolution that the wasm kernel TriageWinogradConv2D takes runs as
 * a Winograd F(4x4, 3x3) convolution (kernels/winograd.ts). Any other model: `model.predict`.
 */
export function forwardPass(tf: typeof tfTypes, model: tfTypes.LayersModel, inputShape: readonly number[]): Forward {
  const predict = (x: tfTypes.Tensor): tfTypes.Tensor => model.predict(x) as tfTypes.Tensor;
  const plain = Object.assign(predict, { dispose: () => {} });
  if (!(model instanceof tf.Sequential)) return plain;
  const modelInput = model.inputs[0]?.shape;
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const sameInput =
    modelInput !== undefined &&
    modelInput.length === inputShape.length + 1 &&
    inputShape.every((d, i) => modelInput[i + 1] === d);
  if (!sameInput || layers.length === 0 || layers.some((l) => !l.built)) return plain;
  const kwargs = { training: false };
  const owned: tfTypes.Tensor[] = [];
  const steps: Step[] = [];
  for (let i = 0; i < layers.length;) {
    const block = convBlock(tf, layers, i, owned);
    if (block !== undefined) {
      steps.push(block.step);
      i += block.take;
    } else {
      const l = layers[i++] as tfTypes.layers.Layer;
      steps.push((x) => l.call(x, kwargs) as tfTypes.Tensor);
    }
  }
  const run = (x: tfTypes.Tensor): tfTypes.Tensor => steps.reduce((y, step) => step(y), x);
  return Object.assign(run, { dispose: () => tf.dispose(owned) });
}

/** Runs `forward` on n images of `inputShape` in `flat` and returns the outputs, flat. */
export function scoreFlat(
  tf: typeof tfTypes,
  forward: (x: tfTypes.Tensor) => tfTypes.Tensor,
  inputShape: readonly number[],
  flat: Float32Array,
  n: number,
): Float32Array {
  return tf.tidy(() => forward(tf.tensor(flat, [n, ...inputShape])).dataSync() as Float32Array);
}

/** The worker's program (plain JS, loading the project's compiled modules). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const tf = require(workerData.tfjs);
const { initBackend } = require(workerData.backendModule);
const { forwardPass, scoreFlat } = require(workerData.inferenceModule);
(async () => {
  await initBackend(workerData.backend);
  const model = await tf.loadLayersModel(tf.io.fromMemory(workerData.artifacts));
  const forward = forwardPass(tf, model, workerData.inputShape);
  parentPort.on('message', (m) => {
    try {
      const out = new Float32Array(scoreFlat(tf, forward, workerData.inputShape, m.x, m.n));
      parentPort.postMessage({ id: m.id, out }, [out.buffer]);
    } catch (e) {
      parentPort.postMessage({ id: m.id, error: String((e && e.stack) || e) });
    }
  });
  parentPort.postMessage({ ready: true });
})().catch((e) => parentPort.postMessage({ error: String((e && e.stack) || e) }));
`;

interface Reply {
  id?: number;
  out?: Float32Array;
  error?: string;
  ready?: boolean;
}

interface Job {
  resolve: (out: Float32Array) => void;
  reject: (e: Error) => void;
}

class ScoringWorker {
  ready = false;
  failed = false;
  private readonly jobs = new Map<number, Job>();
  private next = 0;

  constructor(
    private readonly worker: Worker,
    private readonly onFailure: (reason: string) => void,
  ) {
    worker.unref();
    worker.on('message', (r: Reply) => {
      if (r.ready === true) {
        this.ready = true;
        return;
      }
      const job = r.id === undefined ? undefined : this.jobs.get(r.id);
      if (job === undefined || r.id === undefined) {
        this.fail(r.error ?? 'an unexpected message');
        return;
      }
      this.jobs.delete(r.id);
      if (r.out !== undefined) job.resolve(r.out);
      else job.reject(new Error(r.error ?? 'no output'));
    });
    worker.on('error', (e: Error) => this.fail(e.message));
    worker.on('exit', (code: number) => this.fail(`exited with code ${code}`));
  }

  score(x: Float32Array, n: number): Promise<Float32Array> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      this.worker.postMessage({ id, x, n }, [x.buffer as ArrayBuffer]);
    });
  }

  private fail(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.ready = false;
    for (const job of this.jobs.values()) job.reject(new Error(`inference worker stopped: ${reason}`));
    this.jobs.clear();
    void this.worker.terminate();
    this.onFailure(reason);
  }

  terminate(): void {
    this.failed = true;
    this.ready = false;
    for (const job of this.jobs.values()) job.reject(new Error('inference worker terminated'));
    this.jobs.clear();
    void this.worker.terminate();
  }
}

export interface InferencePoolOptions {
  /** Threads that score a batch, the calling one included (1: no workers). */
  threads: number;
  /** Backend the workers initialise: the one the model runs on here (only wasm and cpu start workers). */
  backend: 'tensorflow' | 'wasm' | 'cpu';
  log?: (msg: string) => void;
}

/** Splits n into `parts` shares, as equal as possible, larger ones first. */
export function shares(n: number, parts: number): number[] {
  const base = Math.floor(n / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < n % parts ? 1 : 0)).filter((s) => s > 0);
}

export class InferencePool {
  private readonly workers: ScoringWorker[] = [];
  private readonly forward: Forward;
  private readonly size: number;
  private disposed = false;
  /** Settles when every worker is ready or has failed (for benches and tests). */
  readonly started: Promise<void>;

  constructor(
    private readonly tf: typeof tfTypes,
    model: tfTypes.LayersModel,
    private readonly inputShape: readonly number[],
    private readonly opts: InferencePoolOptions,
  ) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1)
      throw new RangeError(`inference threads must be a positive integer, got ${opts.threads}`);
    this.forward = forwardPass(tf, model, inputShape);
    this.size = inputShape.reduce((a, b) => a * b, 1);
    // Native TensorFlow computes on its own threads already.
    this.started = opts.threads > 1 && opts.backend !== 'tensorflow' ? this.startWorkers(model) : Promise.resolve();
  }

  /** Threads scoring a batch now: the calling one and the workers that are ready. */
  get threads(): number {
    return 1 + this.workers.filter((w) => w.ready).length;
  }

  private async startWorkers(model: tfTypes.LayersModel): Promise<void> {
    const log = this.opts.log ?? (() => {});
    let artifacts: tfTypes.io.ModelArtifacts | undefined;
    let modules: { backendModule: string; inferenceModule: string };
    try {
      modules = { backendModule: compiledPath('src/ml/backend'), inferenceModule: compiledPath('src/ml/inference') };
      await model.save(
        this.tf.io.withSaveHandler(async (a) => {
          artifacts = a;
          return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
        }),
      );
    } catch (e) {
      log(`inference on one thread: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (this.disposed) return;
    const starting: Promise<void>[] = [];
    for (let i = 1; i < this.opts.threads; i++) {
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          ...modules,
          artifacts,
          inputShape: this.inputShape,
          backend: this.opts.backend,
          tfjs: require.resolve('@tensorflow/tfjs'),
        },
      });
      const w = new ScoringWorker(worker, (reason) => {
        if (!this.disposed) log(`inference worker ${i} stopped (${reason}); batches go to the threads left`);
      });
      this.workers.push(w);
      starting.push(
        new Promise<void>((resolve) => {
          worker.on('message', () => resolve());
          worker.on('exit', () => resolve());
        }),
      );
    }
    await Promise.all(starting);
  }

  /** Scores this thread's share of a batch (synchronously). */
  private local(flat: Float32Array, n: number): Float32Array {
    return scoreFlat(this.tf, this.forward, this.inputShape, flat, n);
  }

  /** The forward pass's outputs (flat, image after image) for the n images in `flat`. */
  async predict(flat: Float32Array, n: number): Promise<Float32Array> {
    if (flat.length !== n * this.size) throw new RangeError(`expected ${n * this.size} values, got ${flat.length}`);
    const ready = this.workers.filter((w) => w.ready);
    const parts = shares(n, 1 + ready.length);
    if (parts.length < 2) return this.local(flat, n);
    let start = parts[0] as number;
    const remote = parts.slice(1).map((count, i) => {
      const from = start;
      start += count;
      const x = flat.slice(from * this.size, (from + count) * this.size);
      return (ready[i] as ScoringWorker).score(x, count).catch((e: unknown) => {
        this.opts.log?.(
          `inference worker ${i + 1}: ${e instanceof Error ? e.message : String(e)}; its ${count} images are scored on the calling thread`,
        );
        return this.local(flat.subarray(from * this.size, (from + count) * this.size), count);
      });
    });
    const outs = [this.local(flat.subarray(0, (parts[0] as number) * this.size), parts[0] as number)];
    outs.push(...(await Promise.all(remote)));
    const result = new Float32Array(outs.reduce((a, o) => a + o.length, 0));
    let at = 0;
    for (const o of outs) {
      result.set(o, at);
      at += o.length;
    }
    return result;
  }

  dispose(): void {
    this.disposed = true;
    for (const w of this.workers) w.terminate();
    this.forward.dispose();
  }
}
