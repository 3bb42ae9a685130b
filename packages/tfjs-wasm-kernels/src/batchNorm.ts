/**
 * Batch normalisation in training mode, channels last, as two wasm kernels.
 *
 * tfjs-layers trains a BatchNormalization layer through tf.moments (Mean, SquaredDifference, Mean)
 * and tf.batchNorm, whose gradient tiles the per-channel statistics to the full tensor and runs
 * about fifteen full-size elementwise kernels per layer and step: on the wasm backend a 5-block
 * screening CNN spent 70% of each step there (Tile alone 1.8 s of 2.7 s for a batch of 32 at
 * 128x128). Here the forward pass is two passes over x (per-channel mean and variance in float64,
 * then y), and the backward pass two passes over x and dy:
 *
 *   xhat = (x - mean) / sqrt(var + eps)         dbeta = sum(dy)      dgamma = sum(dy * xhat)
 *   dx = gamma / sqrt(var + eps) * (dy - dbeta / n - xhat * dgamma / n)
 *
 * The variance is the biased one (divided by n), as tf.moments computes it, and the moving
 * averages are updated as tfjs-layers does. The sums run over x - k, k a per-channel shift (the
 * first row for the statistics, the batch mean for the gradient), so that sums of squares do not
 * cancel when the mean is large against the spread.
 *
 * With C % 4 == 0 (and wasm SIMD) each pass is a generated SIMD loop (simdKernels.ts buildBnSums,
 * buildBnApply): the sums as float32 partials per chunk of rows (about 16 KB of x), which are
 * added in float64; otherwise, and for the rows after the last whole chunk, JS loops in float64.
 * CPU ms per call on the screening CNN's five layers at batch 32 (128x128 input), the JS loops of
 * fc7d769 against the SIMD passes, 7 alternating rounds in one process (medians): forward 50.2 ->
 * 4.4 (x [32,128,128,16]), 25.8 -> 2.7, 11.8 -> 1.4, 6.3 -> 1.1, 1.5 -> 0.2, in all 95.6 -> 9.8;
 * gradient 75.2 -> 7.9, 40.4 -> 3.9, 18.5 -> 2.3, 9.8 -> 1.4, 2.3 -> 0.3, in all 146.2 -> 15.8
 * (outputs equal to 3e-7 relative). `batchNormTraining` is what FastBatchNormalization
 * (models.ts) calls in training on the wasm backend; other backends keep tfjs's own path.
 */
import * as tf from '@tensorflow/tfjs';
import { BN_MAX_CHANNELS, SimdRuntime, bnChunkRows, buildBnApply, buildBnSums, simdRuntime } from './simdKernels';
import { KernelArgs, WasmBackendLike, asWasm, dispose, f32, heapOffset, input } from './wasmUtil';

export const BN_TRAIN_KERNEL = 'TriageBatchNormTrain';
export const BN_TRAIN_GRAD_KERNEL = 'TriageBatchNormTrainGrad';

/**
 * Adds, for rows r0 <= r < r1 of c channels and u = x - k per channel, sum(a) to s and sum(a * u)
 * to s2, in float64, where a = u, or dy when given.
 */
export function shiftedSums(
  x: Float32Array,
  dy: Float32Array | undefined,
  k: ArrayLike<number>,
  c: number,
  r0: number,
  r1: number,
  s: Float64Array,
  s2: Float64Array,
): void {
  for (let r = r0, i = r0 * c; r < r1; r++) {
    for (let ch = 0; ch < c; ch++, i++) {
      const u = (x[i] as number) - (k[ch] as number);
      const a = dy === undefined ? u : (dy[i] as number);
      s[ch] = (s[ch] as number) + a;
      s2[ch] = (s2[ch] as number) + a * u;
    }
  }
}

/** out = p * x + q (+ r * dy) per channel, over rows of c = p.length values. */
export function applyJs(
  x: Float32Array,
  dy: Float32Array | undefined,
  p: ArrayLike<number>,
  q: ArrayLike<number>,
  r: ArrayLike<number>,
  out: Float32Array,
): void {
  const c = p.length;
  const rows = x.length / c;
  for (let row = 0, i = 0; row < rows; row++) {
    for (let ch = 0; ch < c; ch++, i++) {
      let v = (x[i] as number) * (p[ch] as number) + (q[ch] as number);
      if (dy !== undefined) v += (dy[i] as number) * (r[ch] as number);
      out[i] = v;
    }
  }
}

/** Both passes over tensors in the wasm heap, SIMD when c allows it. */
class Passes {
  private readonly simd: SimdRuntime | undefined;
  readonly rows: number;

  constructor(
    private readonly backend: WasmBackendLike,
    args: KernelArgs,
    private readonly c: number,
    size: number,
  ) {
    this.rows = size / c;
    this.simd = c % 4 === 0 && c <= BN_MAX_CHANNELS ? simdRuntime(args.backend) : undefined;
  }

  /** Scratch for the float32 partial sums, when SIMD runs: allocate before taking any view. */
  scratch(): tf.TensorInfo | undefined {
    if (this.simd === undefined) return undefined;
    const chunks = Math.floor(this.rows / bnChunkRows(this.c));
    return this.backend.makeOutput([Math.max(1, chunks) * 2 * this.c + 3 * this.c], 'float32');
  }

  /** The float64 sums of shiftedSums over every row, with k (float32) in scratch's last c values when SIMD runs. */
  sums(
    x: tf.TensorInfo,
    dy: tf.TensorInfo | undefined,
    k: ArrayLike<number>,
    scratch: tf.TensorInfo | undefined,
  ): { s: Float64Array; s2: Float64Array } {
    const { c, rows } = this;
    const s = new Float64Array(c);
    const s2 = new Float64Array(c);
    let done = 0;
    if (this.simd !== undefined && scratch !== undefined) {
      const chunk = bnChunkRows(c);
      const chunks = Math.floor(rows / chunk);
      if (chunks > 0) {
        const buf = f32(this.backend, scratch);
        const kAt = buf.length - c;
        buf.set(k, kAt);
        const run = this.simd.kernel(`BatchNormSums ${c} ${dy !== undefined}`, () => buildBnSums(c, dy !== undefined));
        const base = heapOffset(this.backend, scratch);
        run(
          heapOffset(this.backend, x),
          dy === undefined ? 0 : heapOffset(this.backend, dy),
          base + kAt * 4,
          base,
          chunks,
        );
        const parts = f32(this.backend, scratch);
        for (let j = 0, i = 0; j < chunks; j++) {
          for (let ch = 0; ch < c; ch++, i++) s[ch] = (s[ch] as number) + (parts[i] as number);
          for (let ch = 0; ch < c; ch++, i++) s2[ch] = (s2[ch] as number) + (parts[i] as number);
        }
        done = chunks * chunk;
      }
    }
    shiftedSums(f32(this.backend, x), dy === undefined ? undefined : f32(this.backend, dy), k, c, done, rows, s, s2);
    return { s, s2 };
  }

  /** out = p * x + q (+ r * dy), with the coefficients in scratch's first 3c values when SIMD runs. */
  apply(
    x: tf.TensorInfo,
    dy: tf.TensorInfo | undefined,
    p: Float32Array,
    q: Float32Array,
    r: Float32Array,
    out: tf.TensorInfo,
    scratch: tf.TensorInfo | undefined,
  ): void {
    const { c, rows } = this;
    if (this.simd !== undefined && scratch !== undefined) {
      if (rows === 0) return;
      const buf = f32(this.backend, scratch);
      buf.set(p, 0);
      buf.set(q, c);
      buf.set(r, 2 * c);
      const run = this.simd.kernel(`BatchNormApply ${c} ${dy !== undefined}`, () => [
        buildBnApply(c, dy !== undefined),
      ]);
      run(
        heapOffset(this.backend, x),
        dy === undefined ? 0 : heapOffset(this.backend, dy),
        heapOffset(this.backend, scratch),
        heapOffset(this.backend, out),
        rows,
      );
      return;
    }
    applyJs(
      f32(this.backend, x),
      dy === undefined ? undefined : f32(this.backend, dy),
      p,
      q,
      r,
      f32(this.backend, out),
    );
  }
}

function channels(x: tf.TensorInfo, what: string): number {
  const c = x.shape[x.shape.length - 1];
  if (c === undefined || c === 0 || x.dtype !== 'float32')
    throw new Error(`${what}: expected a non-empty float32 tensor, got ${x.dtype} [${x.shape.join(',')}]`);
  return c;
}

function bnTrainWasm(args: KernelArgs): tf.TensorInfo[] {
  const backend = asWasm(args.backend);
  const x = input(args.inputs, 'x', BN_TRAIN_KERNEL);
  const gamma = input(args.inputs, 'scale', BN_TRAIN_KERNEL);
  const beta = input(args.inputs, 'offset', BN_TRAIN_KERNEL);
  const eps = Number(args.attrs?.varianceEpsilon ?? 1e-3);
  const c = channels(x, BN_TRAIN_KERNEL);
  const passes = new Passes(backend, args, c, tf.util.sizeFromShape(x.shape));
  const y = backend.makeOutput([...x.shape], 'float32');
  const meanOut = backend.makeOutput([c], 'float32');
  const varOut = backend.makeOutput([c], 'float32');
  const scratch = passes.scratch();
  // Views only after the last allocation: allocating may grow (and so detach) the heap.
  const k = f32(backend, x).slice(0, c);
  const { s, s2 } = passes.sums(x, undefined, k, scratch);
  const n = passes.rows;
  const g = f32(backend, gamma);
  const b = f32(backend, beta);
  const mean = f32(backend, meanOut);
  const variance = f32(backend, varOut);
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let ch = 0; ch < c; ch++) {
    const d = (s[ch] as number) / n;
    const m = (k[ch] as number) + d;
    const v = Math.max(0, (s2[ch] as number) / n - d * d);
    mean[ch] = m;
    variance[ch] = v;
    const sc = (g[ch] as number) / Math.sqrt(v + eps);
    scale[ch] = sc;
    shift[ch] = (b[ch] as number) - m * sc;
  }
  passes.apply(x, undefined, scale, shift, scale, y, scratch);
  if (scratch !== undefined) dispose(backend, scratch);
  return [y, meanOut, varOut];
}

function bnTrainGradWasm(args: KernelArgs): tf.TensorInfo[] {
  const backend = asWasm(args.backend);
  const dy = input(args.inputs, 'dy', BN_TRAIN_GRAD_KERNEL);
  const x = input(args.inputs, 'x', BN_TRAIN_GRAD_KERNEL);
  const gamma = input(args.inputs, 'scale', BN_TRAIN_GRAD_KERNEL);
  const meanIn = input(args.inputs, 'mean', BN_TRAIN_GRAD_KERNEL);
  const varIn = input(args.inputs, 'variance', BN_TRAIN_GRAD_KERNEL);
  const eps = Number(args.attrs?.varianceEpsilon ?? 1e-3);
  const c = channels(x, BN_TRAIN_GRAD_KERNEL);
  const passes = new Passes(backend, args, c, tf.util.sizeFromShape(x.shape));
  const dx = backend.makeOutput([...x.shape], 'float32');
  const dgOut = backend.makeOutput([c], 'float32');
  const dbOut = backend.makeOutput([c], 'float32');
  const scratch = passes.scratch();
  const mean = f32(backend, meanIn).slice();
  // dbeta = sum(dy), dxm = sum(dy * (x - mean))
  const { s: dbeta, s2: dxm } = passes.sums(x, dy, mean, scratch);
  const n = passes.rows;
  const variance = f32(backend, varIn);
  const g = f32(backend, gamma);
  const dgamma = f32(backend, dgOut);
  f32(backend, dbOut).set(dbeta);
  // dx = a * dy + b * x + d per channel, with a = gamma*inv, b = -a*inv^2*dxm/n, d = -a*dbeta/n - b*mean.
  const a = new Float32Array(c);
  const b = new Float32Array(c);
  const d = new Float32Array(c);
  for (let ch = 0; ch < c; ch++) {
    const inv = 1 / Math.sqrt((variance[ch] as number) + eps);
    dgamma[ch] = (dxm[ch] as number) * inv;
    const ak = (g[ch] as number) * inv;
    const bk = (-ak * inv * inv * (dxm[ch] as number)) / n;
    a[ch] = ak;
    b[ch] = bk;
    d[ch] = (-ak * (dbeta[ch] as number)) / n - bk * (mean[ch] as number);
  }
  passes.apply(x, dy, b, d, a, dx, scratch);
  if (scratch !== undefined) dispose(backend, scratch);
  return [dx, dgOut, dbOut];
}

/** A per-channel operand: rank 1 of size c, or ones before a last axis of c. */
function perChannel(t: tf.TensorInfo | undefined, c: number): boolean {
  if (t == null) return true;
  const s = t.shape;
  return t.dtype === 'float32' && s.length >= 1 && s[s.length - 1] === c && s.slice(0, -1).every((d) => d === 1);
}

/**
 * FusedBatchNorm (tf.batchNorm: batch norm with given statistics, as at inference) on wasm: one
 * SIMD pass y = x * scale + shift per channel, with scale = gamma / sqrt(var + eps) and
 * shift = beta - mean * scale computed once per channel; the stock kernel (a plain loop) for
 * operands that are not per channel of the last axis. CPU ms per call on the screening CNN's five
 * layers at batch 32, stock against this (7 alternating rounds in one process, medians): 38.6 ->
 * 2.5 (x [32,128,128,16]), 18.7 -> 1.4, 9.3 -> 0.6, 4.7 -> 0.4, 1.3 -> 0.2.
 */
export function makeFusedBatchNormWasm(original: tf.KernelFunc) {
  return function fusedBatchNormWasm(args: KernelArgs): tf.TensorInfo {
    const { x, mean, variance, offset, scale } = args.inputs;
    const c = x?.shape[x.shape.length - 1];
    const stock = (): tf.TensorInfo => original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    if (
      x == null ||
      mean == null ||
      variance == null ||
      c === undefined ||
      c === 0 ||
      x.dtype !== 'float32' ||
      ![mean, variance, offset, scale].every((t) => perChannel(t, c))
    )
      return stock();
    const backend = asWasm(args.backend);
    const eps = Number(args.attrs?.varianceEpsilon ?? 1e-3);
    const passes = new Passes(backend, args, c, tf.util.sizeFromShape(x.shape));
    const y = backend.makeOutput([...x.shape], 'float32');
    const scratch = passes.scratch();
    const m = f32(backend, mean);
    const v = f32(backend, variance);
    const g = scale == null ? undefined : f32(backend, scale);
    const b = offset == null ? undefined : f32(backend, offset);
    const p = new Float32Array(c);
    const q = new Float32Array(c);
    for (let ch = 0; ch < c; ch++) {
      const sc = (g === undefined ? 1 : (g[ch] as number)) / Math.sqrt((v[ch] as number) + eps);
      p[ch] = sc;
      q[ch] = (b === undefined ? 0 : (b[ch] as number)) - (m[ch] as number) * sc;
    }
    passes.apply(x, undefined, p, q, p, y, scratch);
    if (scratch !== undefined) dispose(backend, scratch);
    return y;
  };
}

export function fusedBatchNormConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'FusedBatchNorm', backendName: 'wasm', kernelFunc: makeFusedBatchNormWasm(original) };
}

export const batchNormTrainConfig: tf.KernelConfig = {
  kernelName: BN_TRAIN_KERNEL,
  backendName: 'wasm',
  kernelFunc: bnTrainWasm,
};
export const batchNormTrainGradConfig: tf.KernelConfig = {
  kernelName: BN_TRAIN_GRAD_KERNEL,
  backendName: 'wasm',
  kernelFunc: bnTrainGradWasm,
};

/** Whether batchNormTraining can run here: the wasm backend with the kernels registered. */
export function batchNormKernelsActive(): boolean {
  return (
    tf.getBackend() === 'wasm' &&
    tf.getKernel(BN_TRAIN_KERNEL, 'wasm') != null &&
    tf.getKernel(BN_TRAIN_GRAD_KERNEL, 'wasm') != null
  );
}

/**
 * Training-mode batch normalisation over every axis but the last, with its gradient, through the
 * two kernels. Returns the normalised tensor and the batch's mean and (biased) variance; the
 * statistics carry no gradient (use them for the moving averages).
 */
export function batchNormTraining(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  let stats: tf.Tensor[] = [];
  const forward = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, variance] = tf
      .engine()
      .runKernel<tf.Tensor[]>(BN_TRAIN_KERNEL, { x: xi, scale: g, offset: b }, { varianceEpsilon: epsilon });
    save([xi, g, mean as tf.Tensor, variance as tf.Tensor]);
    stats = [tf.keep((mean as tf.Tensor).clone()), tf.keep((variance as tf.Tensor).clone())];
    return {
      value: y as tf.Tensor,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, sg, sm, sv] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        const grads = tf
          .engine()
          .runKernel<tf.Tensor[]>(
            BN_TRAIN_GRAD_KERNEL,
            { dy: dy as tf.Tensor, x: sx, scale: sg, mean: sm, variance: sv },
            { varianceEpsilon: epsilon },
          );
        return grads;
      },
    };
  };
  const f = tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = f(x, gamma, beta);
  const [mean, variance] = stats as [tf.Tensor, tf.Tensor];
  return { y, mean, variance };
}
