/**
 * The promoted model, loaded once per instance and swapped when `models/current.json` changes.
 * The ETag of current.json is checked at most every `refreshMs`; a change loads the new version
 * (one load at a time) and disposes the old one. Predictions are micro-batched: calls that arrive
 * while a batch is being scored are scored together in the next one.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { ModelCard } from '../ml/modelStore';
import { applyTemperature } from '../ml/calibration';
import type { BackendInfo } from '../ml/backend';
import type { Log } from '../util/log';
import type { InferencePool } from '../ml/inference';

export interface ScoredImage {
  /** Calibrated class probabilities (temperature from the model card). */
  probabilities: Float32Array;
  /** Milliseconds the forward pass (and temperature scaling) took for the batch this image was in. */
  predictMs: number;
  batchSize: number;
}

export interface LoadedModel {
  version: string;
  card: ModelCard;
  backend: BackendInfo;
  score(pixels: Float32Array): Promise<ScoredImage>;
  /** Resolves, once the scoring threads have started (or failed to), with how many score a batch. */
  threadsReady(): Promise<number>;
}

export interface ModelCacheOptions {
  /** Minimum time between checks of models/current.json. Default 2000 ms. */
  refreshMs?: number;
  /** Largest batch given to model.predict. Default 64. */
  maxBatch?: number;
  /** Threads that score a batch on the wasm (or cpu) backend, this one included (ml/inference.ts). Default 1. */
  inferThreads?: number;
  log?: Log;
  backend?: 'tensorflow' | 'wasm' | 'cpu';
}

interface Pending {
  pixels: Float32Array;
  resolve: (s: ScoredImage) => void;
  reject: (e: unknown) => void;
}

class Batcher implements LoadedModel {
  private queue: Pending[] = [];
  private busy = false;
  private disposed = false;

  constructor(
    readonly version: string,
    readonly card: ModelCard,
    readonly backend: BackendInfo,
    private readonly model: tfTypes.LayersModel,
    private readonly maxBatch: number,
    private readonly pool: InferencePool,
  ) {}

  async threadsReady(): Promise<number> {
    await this.pool.started;
    return this.pool.threads;
  }

  score(pixels: Float32Array): Promise<ScoredImage> {
    const [h, w, c] = this.card.inputShape;
    if (pixels.length !== h * w * c) {
      return Promise.reject(
        new ShapeMismatch(`model ${this.version} expects ${h}x${w}x${c} inputs, got ${pixels.length} values`),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ pixels, resolve, reject });
      if (!this.busy) setImmediate(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const out = await this.predict(batch.map((b) => b.pixels));
          batch.forEach((b, i) =>
            b.resolve({
              probabilities: out.probs[i] ?? new Float32Array(),
              predictMs: out.ms,
              batchSize: batch.length,
            }),
          );
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
        // Let callers that are about to enqueue get into the next batch.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.busy = false;
      if (this.disposed) this.release();
    }
  }

  private async predict(inputs: Float32Array[]): Promise<{ probs: Float32Array[]; ms: number }> {
    const [h, w, c] = this.card.inputShape;
    const size = h * w * c;
    const flat = new Float32Array(inputs.length * size);
    inputs.forEach((p, i) => flat.set(p, i * size));
    const started = performance.now();
    const classes = this.card.classNames.length;
    const p = await this.pool.predict(flat, inputs.length);
    // Temperature scaling, softmax(log p / T), in plain JS: 10 values an image.
    const data = applyTemperature(p, classes, this.card.temperature > 0 ? this.card.temperature : 1);
    const ms = performance.now() - started;
    return { probs: inputs.map((_, i) => data.slice(i * classes, (i + 1) * classes)), ms };
  }

  private release(): void {
    this.pool.dispose();
    this.model.dispose();
  }

  dispose(): void {
    this.disposed = true;
    if (!this.busy) this.release();
  }
}

export class ShapeMismatch extends Error {}

export class ModelCache {
  private loaded: Batcher | undefined;
  private etag: string | undefined;
  private checkedAt = 0;
  private refreshing: Promise<void> | undefined;
  private readonly refreshMs: number;
  private readonly maxBatch: number;

  constructor(
    private readonly store: BlobStore,
    private readonly opts: ModelCacheOptions = {},
  ) {
    this.refreshMs = opts.refreshMs ?? 2000;
    this.maxBatch = opts.maxBatch ?? 64;
  }

  /** The promoted model, or undefined when none is promoted yet. */
  async current(): Promise<LoadedModel | undefined> {
    // A check (and possibly a model load) under way is awaited by every caller, so nobody is
    // told "no model" while the first one is still loading.
    if (this.refreshing === undefined && Date.now() - this.checkedAt >= this.refreshMs) {
      this.refreshing = this.refresh().finally(() => {
        this.checkedAt = Date.now();
        this.refreshing = undefined;
      });
    }
    if (this.refreshing !== undefined) await this.refreshing;
    return this.loaded;
  }

  private async refresh(): Promise<void> {
    const head = await this.store.head(CONTAINERS.models, paths.currentModel());
    if (head === undefined) return; // nothing promoted (keep a loaded model if current.json vanished)
    if (head.etag === this.etag) return;
    const cur = await this.store.getJson<{ version?: unknown }>(CONTAINERS.models, paths.currentModel());
    if (cur === undefined || typeof cur.value.version !== 'string') return;
    const version = cur.value.version;
    if (this.loaded?.version !== version) {
      // Loaded lazily so that functions that never score do not pay for TensorFlow.js.
      const [{ initBackend }, { loadModel }, tf, { InferencePool }] = await Promise.all([
        import('../ml/backend'),
        import('../ml/modelStore'),
        import('@tensorflow/tfjs'),
        import('../ml/inference'),
      ]);
      const backend = await initBackend(this.opts.backend, (m) => this.opts.log?.info(m));
      const { model, card } = await loadModel(this.store, version);
      const previous = this.loaded;
      const pool = new InferencePool(tf, model, card.inputShape, {
        threads: this.opts.inferThreads ?? 1,
        backend: backend.name,
        log: (m) => this.opts.log?.info(m),
      });
      this.loaded = new Batcher(version, card, backend, model, this.maxBatch, pool);
      previous?.dispose();
      this.opts.log?.info(`model ${version} loaded (${card.architecture}, backend ${backend.name})`);
    }
    this.etag = cur.etag;
  }

  dispose(): void {
    this.loaded?.dispose();
    this.loaded = undefined;
  }
}
