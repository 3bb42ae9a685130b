/**
 * Identity, and Cast to the same dtype, for the wasm backend without a copy: the output shares the
 * input's heap data (its reference count goes up), as on tfjs's cpu backend and as the wasm
 * backend's own Reshape does.
 *
 * The stock wasm kernels copy the tensor. tfjs's engine runs Identity for every tensor it saves for
 * the backward pass (Engine.saveTensorsForBackwardMode clones each saved input and output): 44
 * calls per peer CNN training step, among them copies of the first conv layer's 2.8 MB outputs;
 * and the Relu gradient casts a float32 Step to float32. Sharing is safe because no kernel here or
 * in tfjs writes into an input tensor (FusedAdam and Variable.assign replace data, never write it).
 */
import * as tf from '@tensorflow/tfjs';
import { KernelArgs, input } from './wasmUtil';

interface RefCounting {
  incRef(dataId: object): void;
}

function share(backend: unknown, x: tf.TensorInfo, dtype: tf.DataType): tf.TensorInfo {
  (backend as RefCounting).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype };
}

function hasIncRef(backend: unknown): boolean {
  return backend != null && typeof (backend as Partial<RefCounting>).incRef === 'function';
}

export function makeIdentityWasm(original: tf.KernelFunc) {
  return function identityWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'Identity');
    if (x.dtype === 'string' || !hasIncRef(args.backend))
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    return share(args.backend, x, x.dtype);
  };
}

export function makeCastWasm(original: tf.KernelFunc) {
  return function castWasm(args: KernelArgs): tf.TensorInfo {
    const x = input(args.inputs, 'x', 'Cast');
    const dtype = args.attrs?.dtype as tf.DataType | undefined;
    if (dtype !== x.dtype || x.dtype === 'string' || !hasIncRef(args.backend))
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    return share(args.backend, x, x.dtype);
  };
}

export function identityConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Identity', backendName: 'wasm', kernelFunc: makeIdentityWasm(original) };
}

export function castConfig(original: tf.KernelFunc): tf.KernelConfig {
  return { kernelName: 'Cast', backendName: 'wasm', kernelFunc: makeCastWasm(original) };
}
