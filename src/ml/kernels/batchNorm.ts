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
 * averages are updated as tfjs-layers does. `batchNormTraining` is what FastBatchNormalization
 * (models.ts) calls in training on the wasm backend; other backends keep tfjs's own path.
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, asWasm, f32, input } from './wasmUtil';

export const BN_TRAIN_KERNEL = 'TriageBatchNormTrain';
export const BN_TRAIN_GRAD_KERNEL = 'TriageBatchNormTrainGrad';

/** Per-channel mean and biased variance of x (channels last, c channels), accumulated in float64. */
export function channelMoments(x: Float32Array, c: number): { mean: Float64Array; variance: Float64Array } {
  const rows = x.length / c;
  const s = new Float64Array(c);
  const s2 = new Float64Array(c);
  for (let r = 0, i = 0; r < rows; r++) {
    for (let k = 0; k < c; k++, i++) {
      const v = x[i] as number;
      s[k] = (s[k] as number) + v;
      s2[k] = (s2[k] as number) + v * v;
    }
  }
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let k = 0; k < c; k++) {
    const m = (s[k] as number) / rows;
    mean[k] = m;
    variance[k] = Math.max(0, (s2[k] as number) / rows - m * m);
  }
  return { mean, variance };
}

/** y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel. */
export function normalize(x: Float32Array, y: Float32Array, mean: ArrayLike<number>, variance: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): void {
  const c = mean.length;
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let k = 0; k < c; k++) {
    const s = (gamma[k] as number) / Math.sqrt((variance[k] as number) + eps);
    scale[k] = s;
    shift[k] = (beta[k] as number) - (mean[k] as number) * s;
  }
  const rows = x.length / c;
  for (let r = 0, i = 0; r < rows; r++) for (let k = 0; k < c; k++, i++) y[i] = (x[i] as number) * (scale[k] as number) + (shift[k] as number);
}

/** The backward pass; fills dx and returns dgamma and dbeta. */
export function normalizeGrad(
  dy: Float32Array,
  x: Float32Array,
  dx: Float32Array,
  mean: ArrayLike<number>,
  variance: ArrayLike<number>,
  gamma: ArrayLike<number>,
  eps: number,
): { dgamma: Float64Array; dbeta: Float64Array } {
  const c = mean.length;
  const rows = x.length / c;
  const inv = new Float64Array(c);
  for (let k = 0; k < c; k++) inv[k] = 1 / Math.sqrt((variance[k] as number) + eps);
  const dbeta = new Float64Array(c);
  const dxm = new Float64Array(c); // sum(dy * (x - mean))
  for (let r = 0, i = 0; r < rows; r++) {
    for (let k = 0; k < c; k++, i++) {
      const g = dy[i] as number;
      dbeta[k] = (dbeta[k] as number) + g;
      dxm[k] = (dxm[k] as number) + g * ((x[i] as number) - (mean[k] as number));
    }
  }
  const dgamma = new Float64Array(c);
  // dx = a * dy + b * x + d per channel, with a = gamma*inv, b = -a*inv^2*dxm/n, d = -a*dbeta/n - b*mean.
  const a = new Float32Array(c);
  const b = new Float32Array(c);
  const d = new Float32Array(c);
  for (let k = 0; k < c; k++) {
    const ik = inv[k] as number;
    dgamma[k] = (dxm[k] as number) * ik;
    const ak = (gamma[k] as number) * ik;
    const bk = (-ak * ik * ik * (dxm[k] as number)) / rows;
    a[k] = ak;
    b[k] = bk;
    d[k] = (-ak * (dbeta[k] as number)) / rows - bk * (mean[k] as number);
  }
  for (let r = 0, i = 0; r < rows; r++) {
    for (let k = 0; k < c; k++, i++) dx[i] = (a[k] as number) * (dy[i] as number) + (b[k] as number) * (x[i] as number) + (d[k] as number);
  }
  return { dgamma, dbeta };
}

function channels(x: tf.TensorInfo, what: string): number {
  const c = x.shape[x.shape.length - 1];
  if (c === undefined || c === 0 || x.dtype !== 'float32') throw new Error(`${what}: expected a non-empty float32 tensor, got ${x.dtype} [${x.shape.join(',')}]`);
  return c;
}

function bnTrainWasm(args: KernelArgs): tf.TensorInfo[] {
  const backend = asWasm(args.backend);
  const x = input(args.inputs, 'x', BN_TRAIN_KERNEL);
  const gamma = input(args.inputs, 'scale', BN_TRAIN_KERNEL);
  const beta = input(args.inputs, 'offset', BN_TRAIN_KERNEL);
  const eps = Number(args.attrs?.varianceEpsilon ?? 1e-3);
  const c = channels(x, BN_TRAIN_KERNEL);
  const y = backend.makeOutput([...x.shape], 'float32');
  const meanOut = backend.makeOutput([c], 'float32');
  const varOut = backend.makeOutput([c], 'float32');
  const xs = f32(backend, x);
  const { mean, variance } = channelMoments(xs, c);
  normalize(xs, f32(backend, y), mean, variance, f32(backend, gamma), f32(backend, beta), eps);
  f32(backend, meanOut).set(mean);
  f32(backend, varOut).set(variance);
  return [y, meanOut, varOut];
}

function bnTrainGradWasm(args: KernelArgs): tf.TensorInfo[] {
  const backend = asWasm(args.backend);
  const dy = input(args.inputs, 'dy', BN_TRAIN_GRAD_KERNEL);
  const x = input(args.inputs, 'x', BN_TRAIN_GRAD_KERNEL);
  const gamma = input(args.inputs, 'scale', BN_TRAIN_GRAD_KERNEL);
  const mean = input(args.inputs, 'mean', BN_TRAIN_GRAD_KERNEL);
  const variance = input(args.inputs, 'variance', BN_TRAIN_GRAD_KERNEL);
  const eps = Number(args.attrs?.varianceEpsilon ?? 1e-3);
  const c = channels(x, BN_TRAIN_GRAD_KERNEL);
  const dx = backend.makeOutput([...x.shape], 'float32');
  const dgOut = backend.makeOutput([c], 'float32');
  const dbOut = backend.makeOutput([c], 'float32');
  const r = normalizeGrad(f32(backend, dy), f32(backend, x), f32(backend, dx), f32(backend, mean), f32(backend, variance), f32(backend, gamma), eps);
  f32(backend, dgOut).set(r.dgamma);
  f32(backend, dbOut).set(r.dbeta);
  return [dx, dgOut, dbOut];
}

export const batchNormTrainConfig: tf.KernelConfig = { kernelName: BN_TRAIN_KERNEL, backendName: 'wasm', kernelFunc: bnTrainWasm as unknown as tf.KernelFunc };
export const batchNormTrainGradConfig: tf.KernelConfig = { kernelName: BN_TRAIN_GRAD_KERNEL, backendName: 'wasm', kernelFunc: bnTrainGradWasm as unknown as tf.KernelFunc };

/** Whether batchNormTraining can run here: the wasm backend with the kernels registered. */
export function batchNormKernelsActive(): boolean {
  return tf.getBackend() === 'wasm' && tf.getKernel(BN_TRAIN_KERNEL, 'wasm') != null && tf.getKernel(BN_TRAIN_GRAD_KERNEL, 'wasm') != null;
}

/**
 * Training-mode batch normalisation over every axis but the last, with its gradient, through the
 * two kernels. Returns the normalised tensor and the batch's mean and (biased) variance; the
 * statistics carry no gradient (use them for the moving averages).
 */
export function batchNormTraining(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  let stats: tf.Tensor[] = [];
  const forward = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, variance] = tf.engine().runKernel(BN_TRAIN_KERNEL, { x: xi, scale: g, offset: b }, { varianceEpsilon: epsilon }) as tf.Tensor[];
    save([xi, g, mean as tf.Tensor, variance as tf.Tensor]);
    stats = [tf.keep((mean as tf.Tensor).clone()), tf.keep((variance as tf.Tensor).clone())];
    return {
      value: y as tf.Tensor,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, sg, sm, sv] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        const grads = tf.engine().runKernel(BN_TRAIN_GRAD_KERNEL, { dy: dy as tf.Tensor, x: sx, scale: sg, mean: sm, variance: sv }, { varianceEpsilon: epsilon }) as tf.Tensor[];
        return grads;
      },
    };
  };
  const f = tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = f(x, gamma, beta);
  const [mean, variance] = stats as [tf.Tensor, tf.Tensor];
  return { y, mean, variance };
}
