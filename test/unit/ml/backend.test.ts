/**
 * Backend selection. tfjs keeps one engine per process (per jest test file), so each scenario loads
 * a fresh copy of src/ml/backend.ts (its choice is per module instance) with jest.isolateModules.
 */
import { PROJECT_WASM_KERNELS } from '@image-triage/tfjs-wasm-kernels';
import * as tf from '@tensorflow/tfjs';
import * as wasmPackage from '@tensorflow/tfjs-backend-wasm';
import type * as BackendModule from '../../../src/ml/backend';

function freshBackendModule(): typeof BackendModule {
  let mod: typeof BackendModule | undefined;
  jest.isolateModules(() => {
    // A fresh backend.ts, but the same tfjs (re-evaluating tfjs would re-register every kernel).
    jest.doMock('@tensorflow/tfjs', () => tf);
    jest.doMock('@tensorflow/tfjs-backend-wasm', () => wasmPackage);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('../../../src/ml/backend') as typeof BackendModule;
  });
  if (mod === undefined) throw new Error('module did not load');
  return mod;
}

function nativeTensorflowInstalled(): boolean {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require.resolve(pkg);
      return true;
    } catch {
      // not installed
    }
  }
  return false;
}

describe('initBackend', () => {
  it('rejects an unknown backend name, naming the valid ones', async () => {
    const { initBackend } = freshBackendModule();
    await expect(initBackend('gpu' as never)).rejects.toThrow(/unknown ML backend 'gpu'.*tensorflow, wasm, cpu/);
  });

  it('fails clearly when a forced backend cannot load', async () => {
    if (nativeTensorflowInstalled()) return; // only meaningful where tfjs-node is absent (as here)
    const { initBackend, currentBackend } = freshBackendModule();
    await expect(initBackend('tensorflow')).rejects.toThrow(
      /ML backend 'tensorflow' \(forced by TRIAGE_BACKEND\) cannot be used: .*tfjs-node/,
    );
    expect(currentBackend()).toBeUndefined();
  });

  it('uses cpu when forced', async () => {
    const { initBackend, currentBackend } = freshBackendModule();
    const logs: string[] = [];
    const info = await initBackend('cpu', (m) => logs.push(m));
    expect(info).toMatchObject({ name: 'cpu', tfjsVersion: tf.version.tfjs });
    expect(tf.getBackend()).toBe('cpu');
    expect(currentBackend()).toBe(info);
    expect(logs).toEqual([expect.stringMatching(/^ml backend: cpu - /)]);
  });

  it('picks the fastest backend that loads (wasm + project kernels here), once per process', async () => {
    const { initBackend, currentBackend } = freshBackendModule();
    expect(currentBackend()).toBeUndefined();
    const logs: string[] = [];
    const [info, again] = await Promise.all([initBackend(undefined, (m) => logs.push(m)), initBackend()]);
    expect(again).toBe(info);
    expect(await initBackend()).toBe(info);
    expect(currentBackend()).toBe(info);
    expect(tf.getBackend()).toBe(info.name);
    if (nativeTensorflowInstalled()) {
      expect(info.name).toBe('tensorflow');
      return;
    }
    expect(info).toMatchObject({ name: 'wasm', simd: true, threads: 1 });
    expect(info.detail).toContain(`simd build, 1 thread; project kernels: ${PROJECT_WASM_KERNELS.join(', ')})`);
    expect(logs[0]).toMatch(/tensorflow unavailable/);
    expect(logs[logs.length - 1]).toMatch(/^ml backend: wasm - /);
    // The backend trains a conv layer (stock tfjs-backend-wasm has no Conv2DBackpropFilter).
    const w = tf.variable(tf.ones([3, 3, 1, 2]));
    const { grads } = tf.variableGrads(() =>
      tf.conv2d(tf.ones<tf.Rank.R4>([1, 5, 5, 1]), w as tf.Variable<tf.Rank.R4>, 1, 'valid').sum<tf.Scalar>(),
    );
    expect(Array.from(await (grads[w.name] as tf.Tensor).data())).toEqual(new Array(18).fill(9));
    // Once chosen, the backend is not switched under loaded models.
    await expect(initBackend('cpu')).rejects.toThrow(/already 'wasm'.*cannot switch to 'cpu'/);
    expect(await initBackend('wasm')).toBe(info);
  });
});
