/**
 * Multi-threaded tfjs wasm backend in Node.
 *
 * tfjs-backend-wasm 4.22 ships a threaded SIMD build (XNNPACK with a pthread pool), but refuses it in
 * Node (`WASM_HAS_MULTITHREAD_SUPPORT` is false there) because its loader hands the pthread workers
 * blob: URLs, which Node's worker_threads cannot open. This module loads that same build the Node
 * way and registers it as the 'wasm' backend (same name, same kernels, BackendWasm class):
 *  - the pthread worker script (exported by the package as a string) is written once to a file in
 *    the OS temp dir, and the workers get the real path of the package's main script;
 *  - the .wasm is read from the package with fs;
 *  - XNNPACK caps its pool at (logical cores / 2), which is 1 on a 2-core machine; the import that
 *    reports the core count is answered with 2 * threads so the pool gets `threads` threads;
 *  - the workers are unref'd, so they never keep the process alive.
 *
 * Only the XNNPACK kernels (Conv2D, matmul, ...) run in parallel; the project's JS kernels run on
 * the main thread as before.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';

interface PThreadLike {
  runningWorkers: { unref(): void }[];
  unusedWorkers: { terminate(): unknown }[];
}

interface EmscriptenModuleLike {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  PThread?: PThreadLike;
  tfjs?: Record<string, unknown>;
}

/** The part of the WebAssembly global used here (lib ES2022 without DOM has no WebAssembly types). */
interface WebAssemblyApi {
  instantiate(bytes: Uint8Array, imports: unknown): Promise<{ instance: unknown; module: unknown }>;
}

type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModuleLike>;

interface WasmPackage {
  BackendWasm: new (wasm: unknown) => tf.KernelBackend;
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
}

function packageDir(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
}

/** Writes the pthread worker script to the temp dir (once per content) and returns its path. */
function workerScript(wasmOut: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { wasmWorkerContents } = require(path.join(wasmOut, 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  // The string holds escaped newlines inside JS strings that a template literal turned into real
  // ones; tfjs undoes that the same way before making its blob.
  const source = wasmWorkerContents.replace(/\n/g, '\\n');
  let hash = 0;
  for (let i = 0; i < source.length; i++) hash = (Math.imul(hash, 31) + source.charCodeAt(i)) | 0;
  const file = path.join(os.tmpdir(), `tfjs-wasm-threaded-simd-${(hash >>> 0).toString(16)}.worker.js`);
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== source) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, source);
    fs.renameSync(tmp, file);
  }
  return file;
}

async function loadThreadedModule(threads: number): Promise<EmscriptenModuleLike> {
  const wasmOut = path.join(packageDir(), 'wasm-out');
  const mainScript = path.join(wasmOut, 'tfjs-backend-wasm-threaded-simd.js');
  const binary = fs.readFileSync(path.join(wasmOut, 'tfjs-backend-wasm-threaded-simd.wasm'));
  const worker = workerScript(wasmOut);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const factory = require(mainScript) as Factory;
  let rejectLoad: (e: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    rejectLoad = reject;
  });
  const module = await Promise.race([
    failed,
    factory({
      locateFile: (p: string) => (p.endsWith('.worker.js') ? worker : path.join(wasmOut, p)),
      mainScriptUrlOrBlob: mainScript,
      instantiateWasm: (
        imports: { env: Record<string, unknown> },
        done: (instance: unknown, module: unknown) => void,
      ) => {
        imports.env.emscripten_num_logical_cores = () => 2 * threads;
        const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
        wasmApi.instantiate(binary, imports).then(
          (r) => done(r.instance, r.module),
          (e: unknown) => rejectLoad(e),
        );
        return {};
      },
    }),
  ]);
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  return module;
}

/**
 * Replaces the registered 'wasm' backend factory by one that loads the threaded build with
 * `threads` XNNPACK threads. Call before the wasm backend is first initialised (tf.setBackend).
 */
export function registerThreadedWasmBackend(threads: number, priority = 2): void {
  if (!Number.isInteger(threads) || threads < 2 || threads > 8)
    throw new RangeError(`wasm threads must be an integer from 2 to 8, got ${threads}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('@tensorflow/tfjs-backend-wasm') as WasmPackage;
  if ((tf.engine().registry as Record<string, unknown>)['wasm'] != null)
    throw new Error('the wasm backend is already initialised; choose its threads before first use');
  tf.removeBackend('wasm');
  pkg.setThreadsCount(threads);
  tf.registerBackend(
    'wasm',
    async () => {
      const module = await loadThreadedModule(threads);
      const backend = new pkg.BackendWasm(module);
      const pt = module.PThread;
      if (pt != null) {
        // The pool's threads are parked in workers that would keep Node alive; the spare
        // pre-spawned workers are not needed (the pool is created once, above).
        for (const w of pt.runningWorkers) w.unref();
        for (const w of pt.unusedWorkers) w.terminate();
        pt.unusedWorkers = [];
      }
      return backend;
    },
    priority,
  );
}
