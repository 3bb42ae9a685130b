/**
 * Model architectures by name. Every layer's initializer is seeded (seed + layer index), so two
 * models built with the same options start from identical weights. Dropout layers draw their
 * masks from a seed that `train()` advances every step (see `reseedDropout`), which makes a
 * training run reproducible too; a saved model holds only standard tfjs layers.
 */
import * as tf from '@tensorflow/tfjs';
import { FusedAdam } from './optimizer';
import { batchNormKernelsActive, batchNormTraining } from '@image-triage/tfjs-wasm-kernels';

export const MODEL_NAMES = ['cnn', 'mlp', 'peer', 'screen'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface BuildOptions {
  /** [height, width, channels] of one input image. Default [28, 28, 1]. */
  inputShape?: [number, number, number];
  /** Output classes in index order. Default the digits '0'..'9'. */
  classNames?: readonly string[];
  /** Seed of every initializer (must be a positive integer; 0 would mean "random" to tfjs). Default 42. */
  seed?: number;
  /** Adam learning rate. Default 1e-3. */
  learningRate?: number;
}

/** Filters of the screening CNN's conv + batch-norm blocks (each followed by a 2x2 max pool). */
export const SCREEN_WIDTHS: readonly number[] = [16, 32, 64, 128, 128];
export const SCREEN_DROPOUT = 0.3;

export const DEFAULT_CLASS_NAMES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** One-line description of each architecture, for `--help` and model cards. */
export const MODEL_DESCRIPTIONS: Record<ModelName, string> = {
  cnn: 'conv 3x3x32 relu, conv 3x3x32 relu, maxpool 2, conv 3x3x64 relu, maxpool 2, dropout 0.25, dense 128 relu, dropout 0.4, dense softmax',
  mlp: 'dense 512 relu, dropout 0.2, dense 256 relu, dropout 0.2, dense softmax',
  peer: 'conv 3x3x16 relu, maxpool 2, conv 3x3x32 relu, maxpool 2, dense 64 relu, dense softmax (the speed benchmark peer)',
  screen: `radiograph screening: ${SCREEN_WIDTHS.length} blocks of conv 3x3 (${SCREEN_WIDTHS.join(', ')} filters) + batch norm + relu + maxpool 2, global average pooling, dropout ${SCREEN_DROPOUT}, dense softmax`,
};

class Seeds {
  private next: number;
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed <= 0) throw new RangeError(`seed must be a positive integer, got ${seed}`);
    this.next = seed;
  }
  kernel(kind: 'he' | 'glorot'): ReturnType<typeof tf.initializers.heNormal> {
    const seed = this.next++;
    return kind === 'he' ? tf.initializers.heNormal({ seed }) : tf.initializers.glorotUniform({ seed });
  }
  dropout(rate: number): tf.layers.Layer {
    return tf.layers.dropout({ rate, seed: this.next++ });
  }
}

function conv(seeds: Seeds, filters: number, padding: 'same' | 'valid', inputShape?: number[]): tf.layers.Layer {
  return tf.layers.conv2d({
    filters,
    kernelSize: 3,
    padding,
    activation: 'relu',
    kernelInitializer: seeds.kernel('he'),
    biasInitializer: 'zeros',
    ...(inputShape ? { inputShape } : {}),
  });
}

function dense(seeds: Seeds, units: number, activation: 'relu' | 'softmax'): tf.layers.Layer {
  return tf.layers.dense({
    units,
    activation,
    kernelInitializer: seeds.kernel(activation === 'relu' ? 'he' : 'glorot'),
    biasInitializer: 'zeros',
  });
}

/**
 * Builds and compiles (Adam, categorical cross-entropy, accuracy) the named architecture.
 * Labels are one-hot vectors; the output is a softmax over `classNames`.
 */
export function buildModel(name: ModelName, opts: BuildOptions = {}): tf.LayersModel {
  const inputShape = opts.inputShape ?? [28, 28, 1];
  const classes = (opts.classNames ?? DEFAULT_CLASS_NAMES).length;
  if (classes < 2) throw new RangeError('a model needs at least two classes');
  const seeds = new Seeds(opts.seed ?? 42);
  const m = tf.sequential({ name });
  switch (name) {
    case 'mlp':
      m.add(tf.layers.flatten({ inputShape }));
      m.add(dense(seeds, 512, 'relu'));
      m.add(seeds.dropout(0.2));
      m.add(dense(seeds, 256, 'relu'));
      m.add(seeds.dropout(0.2));
      m.add(dense(seeds, classes, 'softmax'));
      break;
    case 'peer':
      m.add(conv(seeds, 16, 'valid', inputShape));
      m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      m.add(conv(seeds, 32, 'valid'));
      m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      m.add(tf.layers.flatten());
      m.add(dense(seeds, 64, 'relu'));
      m.add(dense(seeds, classes, 'softmax'));
      break;
    case 'screen':
      SCREEN_WIDTHS.forEach((filters, i) => {
        m.add(
          linearConv2d({
            filters,
            kernelSize: 3,
            padding: 'same',
            useBias: false,
            kernelInitializer: seeds.kernel('he'),
            ...(i === 0 ? { inputShape } : {}),
          }),
        );
        m.add(batchNormalization());
        m.add(tf.layers.activation({ activation: 'relu' }));
        m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      });
      m.add(tf.layers.globalAveragePooling2d({}));
      m.add(seeds.dropout(SCREEN_DROPOUT));
      m.add(dense(seeds, classes, 'softmax'));
      break;
    case 'cnn':
      m.add(conv(seeds, 32, 'valid', inputShape));
      m.add(conv(seeds, 32, 'valid'));
      m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      m.add(conv(seeds, 64, 'valid'));
      m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
      m.add(tf.layers.flatten());
      m.add(seeds.dropout(0.25));
      m.add(dense(seeds, 128, 'relu'));
      m.add(seeds.dropout(0.4));
      m.add(dense(seeds, classes, 'softmax'));
      break;
    default: {
      const never: never = name;
      throw new RangeError(`unknown model ${String(never)}; expected one of ${MODEL_NAMES.join(', ')}`);
    }
  }
  compileModel(m, opts.learningRate ?? 1e-3);
  return m;
}

/**
 * Adam + categorical cross-entropy + accuracy: how every model here (and every loaded one) is
 * trained. The Adam is FusedAdam: tfjs's update, one kernel per variable on wasm.
 */
export function compileModel(model: tf.LayersModel, learningRate = 1e-3): void {
  model.compile({ optimizer: new FusedAdam(learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
}

/**
 * Gives every Dropout layer a fresh mask seed derived from (seed, step). tfjs draws a dropout
 * mask from `seed` anew on each call, so a fixed seed would repeat one mask forever, and no seed
 * means Math.random. Called by train() before each step.
 */
export function reseedDropout(model: tf.LayersModel, seed: number, step: number): void {
  let i = 0;
  for (const layer of model.layers) {
    if (layer.getClassName() === 'Dropout') {
      // The field is private in the typings but read on every call(); 1 + ... keeps it non-zero.
      (layer as unknown as { seed: number }).seed =
        1 + ((seed * 1_000_003 + step * 7919 + i * 104_729) % 2_147_483_000);
      i++;
    }
  }
}

type LayerArgs = Parameters<typeof tf.layers.batchNormalization>[0];
type Kwargs = Record<string, unknown>;
interface BatchNormFields {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma: tf.LayerVariable;
  beta: tf.LayerVariable;
  movingMean: tf.LayerVariable;
  movingVariance: tf.LayerVariable;
}
const StockBatchNormalization = tf.layers.batchNormalization({}).constructor as new (
  args: LayerArgs,
) => tf.layers.Layer;

/**
 * tfjs-layers' BatchNormalization, trained through the project's two batch-norm kernels on the
 * wasm backend (batchNormTraining of @image-triage/tfjs-wasm-kernels): the same arithmetic (biased batch variance, the same moving
 * averages) without the fifteen full-size kernels of tf.moments + tf.batchNorm's gradient. It
 * serialises as a plain BatchNormalization (the class name is the stock one), so a saved model
 * loads and runs anywhere tfjs does, and inference is the stock layer's.
 */
class FastBatchNormalization extends StockBatchNormalization {
  static className = 'BatchNormalization';
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const self = this as unknown as BatchNormFields;
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const fast =
      kwargs['training'] === true &&
      x !== undefined &&
      self.center &&
      self.scale &&
      (self.axis === -1 || self.axis === x.rank - 1) &&
      batchNormKernelsActive();
    if (!fast) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const { y, mean, variance } = batchNormTraining(x, self.gamma.read(), self.beta.read(), self.epsilon);
      const decay = 1 - self.momentum;
      for (const [v, value] of [
        [self.movingMean, mean],
        [self.movingVariance, variance],
      ] as const) {
        const old = v.read();
        v.write(tf.sub(old, tf.mul(tf.sub(old, value), decay)));
      }
      mean.dispose();
      variance.dispose();
      return y;
    });
  }
}

/** A batch-norm layer (channels last) that trains fast on wasm and saves as tfjs's own. */
export function batchNormalization(args: LayerArgs = {}): tf.layers.Layer {
  return new FastBatchNormalization({ axis: -1, ...args });
}

type ConvArgs = Parameters<typeof tf.layers.conv2d>[0];
interface ConvFields {
  kernel: tf.LayerVariable;
  bias: tf.LayerVariable | null;
  strides: [number, number];
  padding: string;
  dataFormat: string;
  dilationRate: [number, number];
  activation: { getClassName(): string };
}
const StockConv2D = tf.layers.conv2d({ filters: 1, kernelSize: 1 }).constructor as new (
  args: ConvArgs,
) => tf.layers.Layer;

/**
 * tfjs-layers' Conv2D, computed by tf.conv2d when it has no bias and no activation (as before a
 * batch norm). tfjs-layers calls tf.fused.conv2d, whose gradient computes the input's gradient
 * whether or not anything needs it: for a model's first layer that is the gradient of the image,
 * 40 ms CPU per step of the screening CNN (batch 32, 128x128), thrown away. tf.conv2d's gradient
 * is computed only on demand; its forward pass is the same convolution. Saves as a plain Conv2D.
 */
class LinearConv2D extends StockConv2D {
  static className = 'Conv2D';
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const self = this as unknown as ConvFields;
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const plain =
      x !== undefined &&
      x.rank === 4 &&
      self.bias == null &&
      self.activation.getClassName() === 'linear' &&
      self.dataFormat === 'channelsLast' &&
      (self.padding === 'same' || self.padding === 'valid');
    if (!plain) return super.call(inputs, kwargs);
    return tf.tidy(() =>
      tf.conv2d(
        x as tf.Tensor4D,
        self.kernel.read() as tf.Tensor4D,
        self.strides,
        self.padding as 'same' | 'valid',
        'NHWC',
        self.dilationRate,
      ),
    );
  }
}

/** A 2-D convolution layer that saves as tfjs's own Conv2D (see LinearConv2D). */
export function linearConv2d(args: ConvArgs): tf.layers.Layer {
  return new LinearConv2D(args);
}
