/**
 * Data-parallel training steps on worker threads: a way for the tfjs wasm backend (one thread in
 * Node) to use the other cores. A benchmark, not a training option: on the default screening
 * model (batch 32, two cores) a split step is slower than a single-thread one, because each half
 * costs nearly the CPU of the whole step (bench/data-parallel.ts, bench/results/data-parallel.md).
 *
 * Each step splits the batch: the main thread computes the gradients of its share while each
 * worker (its own tfjs + wasm backend + project kernels, a replica of the model) computes the
 * gradients of another share from the current weights; the main thread averages them (weighted by
 * share size) and applies them with the model's own optimizer. The result is the step of the whole
 * batch, up to float rounding. Weights go to the workers each step (the peer CNN: 57k floats).
 *
 * Limits: the loss is categorical cross-entropy on softmax outputs (what every model of this
 * project compiles with); batch norm normalises each share by its own statistics, and state that
 * is not a trainable weight (e.g. batch-norm moving averages) is only updated from the main
 * thread's share. Workers load the compiled modules under dist/ (src/util/compiled.ts).
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { compiledPath } from '../src/util/compiled';

export interface DataParallelOptions {
  /** Extra worker threads (default 1: two cores in all). */
  workers?: number;
  /** Backend the workers initialise (default wasm). */
  backend?: 'wasm' | 'cpu';
  /**
   * Build each replica with the project's buildModel(name, options) instead of from the model's
   * topology: the replica then has the project's training layers (fast batch norm, linear conv),
   * which a topology deserialises as the stock ones.
   */
  build?: { name: string; options: Record<string, unknown> };
}

interface StepRequest {
  weights: Float32Array[];
  x: Float32Array;
  xShape: number[];
  y: Float32Array;
  yShape: number[];
}

interface StepReply {
  loss?: number;
  grads?: Float32Array[];
  ready?: boolean;
  error?: string;
}

/** The worker's program (plain JS, loading the project's compiled modules). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const tf = require(workerData.tfjs);
const { initBackend } = require(workerData.backendModule);
(async () => {
  await initBackend(workerData.backend);
  const model = workerData.build
    ? require(workerData.modelsModule).buildModel(workerData.build.name, workerData.build.options)
    : await tf.models.modelFromJSON({ modelTopology: workerData.topology });
  const vars = model.trainableWeights.map((w) => w.read());
  parentPort.on('message', (m) => {
    try {
      const r = tf.tidy(() => {
        m.weights.forEach((w, i) => vars[i].assign(tf.tensor(w, vars[i].shape)));
        const x = tf.tensor(m.x, m.xShape);
        const y = tf.tensor(m.y, m.yShape);
        const { value, grads } = tf.variableGrads(() => tf.metrics.categoricalCrossentropy(y, model.apply(x, { training: true })).mean(), vars);
        return { loss: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync().slice()) };
      });
      parentPort.postMessage(r, r.grads.map((g) => g.buffer));
    } catch (e) {
      parentPort.postMessage({ error: String(e && e.stack || e) });
    }
  });
  parentPort.postMessage({ ready: true });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

class Replica {
  private pending: ((r: StepReply) => void) | undefined;
  private failure: string | undefined;
  private constructor(private readonly worker: Worker) {
    worker.on('message', (r: StepReply) => {
      if (r.error !== undefined) this.failure = r.error;
      // An idle replica must not keep the process alive (a forgotten dispose() would).
      worker.unref();
      const p = this.pending;
      this.pending = undefined;
      p?.(r);
    });
    worker.on('error', (e) => {
      this.failure = String(e);
      const p = this.pending;
      this.pending = undefined;
      p?.({ error: this.failure });
    });
  }

  static async start(topology: unknown, backend: string, build: DataParallelOptions['build']): Promise<Replica> {
    const backendModule = compiledPath('src/ml/backend');
    const modelsModule = compiledPath('src/ml/models');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { topology, backend, backendModule, modelsModule, build, tfjs: require.resolve('@tensorflow/tfjs') },
    });
    const replica = new Replica(worker);
    const first = await replica.next();
    if (first.ready !== true) {
      await worker.terminate();
      throw new Error(`data-parallel worker failed to start: ${first.error ?? 'no reply'}`);
    }
    return replica;
  }

  private next(): Promise<StepReply> {
    if (this.failure !== undefined) return Promise.resolve({ error: this.failure });
    return new Promise((resolve) => {
      this.pending = resolve;
    });
  }

  step(req: StepRequest): Promise<StepReply> {
    const reply = this.next();
    this.worker.ref();
    this.worker.postMessage(req, [req.x.buffer as ArrayBuffer, req.y.buffer as ArrayBuffer]);
    return reply;
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}

export class DataParallelTrainer {
  private constructor(
    private readonly model: tf.LayersModel,
    private readonly replicas: Replica[],
  ) {}

  /** Starts the workers for a compiled model (its optimizer applies the averaged gradients). */
  static async create(model: tf.LayersModel, opts: DataParallelOptions = {}): Promise<DataParallelTrainer> {
    const workers = opts.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 0 || workers > 16)
      throw new RangeError(`workers must be an integer from 0 to 16, got ${workers}`);
    if (model.optimizer == null)
      throw new Error('DataParallelTrainer needs a compiled model (it applies gradients with the model optimizer)');
    const topology = model.toJSON(null, false);
    const replicas = await Promise.all(
      Array.from({ length: workers }, () => Replica.start(topology, opts.backend ?? 'wasm', opts.build)),
    );
    return new DataParallelTrainer(model, replicas);
  }

  /** One optimizer step on the whole batch; returns its mean loss. */
  async trainOnBatch(x: tf.Tensor, y: tf.Tensor): Promise<number> {
    const n = x.shape[0] ?? 0;
    const parts = this.replicas.length + 1;
    if (n < parts) throw new RangeError(`a batch of ${n} cannot be split across ${parts} threads`);
    const vars = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
    const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * n) / parts));
    const weights = vars.map((v) => v.dataSync() as Float32Array);
    const xs = x.dataSync() as Float32Array;
    const ys = y.dataSync() as Float32Array;
    const xRow = xs.length / n;
    const yRow = ys.length / n;
    const replies = this.replicas.map((r, i) => {
      const lo = bounds[i + 1] as number;
      const hi = bounds[i + 2] as number;
      return r.step({
        weights,
        x: xs.slice(lo * xRow, hi * xRow),
        xShape: [hi - lo, ...x.shape.slice(1)],
        y: ys.slice(lo * yRow, hi * yRow),
        yShape: [hi - lo, ...y.shape.slice(1)],
      });
    });
    const own = bounds[1] as number;
    const mine = tf.tidy(() => {
      const xa = x.slice(0, own);
      const ya = y.slice(0, own);
      const { value, grads } = tf.variableGrads(
        () =>
          tf.metrics
            .categoricalCrossentropy(ya, this.model.apply(xa, { training: true }) as tf.Tensor)
            .mean<tf.Scalar>(),
        vars,
      );
      return { loss: value, grads: vars.map((v) => grads[v.name] as tf.Tensor) };
    });
    const others = await Promise.all(replies);
    let loss = (mine.loss.dataSync()[0] as number) * own;
    const summed = tf.tidy(() => {
      const acc = mine.grads.map((g) => g.mul(own));
      others.forEach((r, i) => {
        if (r.error !== undefined || r.grads === undefined || r.loss === undefined)
          throw new Error(`data-parallel worker failed: ${r.error ?? 'no gradients'}`);
        const share = (bounds[i + 2] as number) - (bounds[i + 1] as number);
        loss += r.loss * share;
        r.grads.forEach((g, k) => {
          const v = vars[k] as tf.Variable;
          acc[k] = (acc[k] as tf.Tensor).add(tf.tensor(g, v.shape).mul(share));
        });
      });
      return acc.map((g) => g.div(n));
    });
    tf.dispose([mine.loss, ...mine.grads]);
    const named: tf.NamedTensorMap = {};
    vars.forEach((v, k) => {
      named[v.name] = summed[k] as tf.Tensor;
    });
    this.model.optimizer.applyGradients(named);
    tf.dispose(summed);
    return loss / n;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.stop()));
  }
}
