/**
 * initBackend's wasmThreads option: the threaded SIMD wasm build of @image-triage/tfjs-wasm-kernels
 * (registerThreadedWasmBackend, tested there against cpu) with the project kernels, said in the
 * backend's info; and the choice is once per process.
 */
import { initBackend } from '../../../src/ml/backend';

describe('threaded wasm backend', () => {
  it('runs XNNPACK on 2 threads when asked, and says so', async () => {
    const info = await initBackend('wasm', undefined, { wasmThreads: 2 });
    expect(info).toMatchObject({ name: 'wasm', threads: 2 });
    expect(info.detail).toMatch(/threaded-simd build, 2 threads/);
  });

  it('keeps the backend chosen first', async () => {
    await expect(initBackend('wasm', undefined, { wasmThreads: 0 })).resolves.toMatchObject({
      name: 'wasm',
      threads: 2,
    });
  });
});
