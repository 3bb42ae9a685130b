/**
 * Picks the TensorFlow.js backend the ML code runs on, once per process.
 *
 * Order when nothing is forced:
 *  1. 'tensorflow': @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, when its native binding loads
 *     (an optional dependency: present on Azure and in the GPU trainer image, absent here);
 *  2. 'wasm': @tensorflow/tfjs-backend-wasm (SIMD; XNNPACK) with the project's training kernels
 *     (@image-triage/tfjs-wasm-kernels), which make it train conv nets at all and several times faster;
 *  3. 'cpu': tfjs's pure-JS backend (slow; always there).
 * `preferred` (the TRIAGE_BACKEND setting) forces one and fails with a clear error if it cannot load.
 *
 * tfjs keeps one backend registry per process, so the choice is process-wide: a second call returns
 * the same BackendInfo, and a call that forces a different backend fails instead of silently
 * switching under models that are already loaded.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { registerThreadedWasmBackend, registerWasmTrainingKernels } from '@image-triage/tfjs-wasm-kernels';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  tfjsVersion: string;
  /** wasm only: whether the SIMD build runs. */
  simd?: boolean;
  /** wasm only: XNNPACK threads. */
  threads?: number;
  /** One line for logs: package, build, kernels. */
  detail: string;
}

export interface BackendOptions {
  /**
   * wasm only: XNNPACK threads. 1 (default) is the stock single-threaded SIMD build; 2..8 load the
   * package's threaded SIMD build (registerThreadedWasmBackend of @image-triage/tfjs-wasm-kernels).
   */
  wasmThreads?: number;
}

export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

let chosen: BackendInfo | undefined;
let pending: Promise<BackendInfo> | undefined;

/** The backend initBackend chose, or undefined before it has finished. */
export function currentBackend(): BackendInfo | undefined {
  return chosen;
}

class BackendUnavailable extends Error {}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] ?? msg;
}

async function tryTensorflow(): Promise<BackendInfo> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // Loading the package loads its native binding and registers the 'tensorflow' backend.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(pkg);
    } catch (e) {
      reasons.push(`${pkg}: ${errorText(e)}`);
      continue;
    }
    if (!(await tf.setBackend('tensorflow'))) {
      reasons.push(`${pkg}: loaded, but the 'tensorflow' backend did not initialise`);
      continue;
    }
    return { name: 'tensorflow', tfjsVersion: tf.version.tfjs, detail: `${pkg} (native TensorFlow)` };
  }
  throw new BackendUnavailable(reasons.join('; '));
}

async function tryWasm(opts: BackendOptions): Promise<BackendInfo> {
  const threads = opts.wasmThreads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 8)
    throw new RangeError(`wasmThreads must be an integer from 1 to 8, got ${threads}`);
  let wasm: { setWasmPaths(prefix: string): void; getThreadsCount(): number };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    wasm = require('@tensorflow/tfjs-backend-wasm') as typeof wasm;
  } catch (e) {
    throw new BackendUnavailable(`@tensorflow/tfjs-backend-wasm: ${errorText(e)}`);
  }
  // In Node the .wasm binaries are files next to the package's main script (dist/); say so
  // explicitly rather than relying on the bundle's own location guess.
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(dist + path.sep);
  if (threads > 1) registerThreadedWasmBackend(threads);
  const kernels = registerWasmTrainingKernels();
  let ok: boolean;
  try {
    ok = await tf.setBackend('wasm');
  } catch (e) {
    throw new BackendUnavailable(`@tensorflow/tfjs-backend-wasm: ${errorText(e)}`);
  }
  if (!ok)
    throw new BackendUnavailable(
      `@tensorflow/tfjs-backend-wasm: the wasm module did not initialise (binaries looked for in ${dist})`,
    );
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  const actualThreads = wasm.getThreadsCount();
  const build = threads > 1 ? 'threaded-simd' : simd ? 'simd' : 'plain';
  return {
    name: 'wasm',
    tfjsVersion: tf.version.tfjs,
    simd,
    threads: actualThreads,
    detail: `@tensorflow/tfjs-backend-wasm (${build} build, ${actualThreads} thread${actualThreads === 1 ? '' : 's'}; project kernels: ${kernels.join(', ')})`,
  };
}

async function tryCpu(): Promise<BackendInfo> {
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailable('the cpu backend did not initialise');
  return {
    name: 'cpu',
    tfjsVersion: tf.version.tfjs,
    detail: '@tensorflow/tfjs cpu (pure JavaScript, slow for training)',
  };
}

async function select(
  preferred: BackendName | undefined,
  log: (msg: string) => void,
  opts: BackendOptions,
): Promise<BackendInfo> {
  const attempts: Record<BackendName, () => Promise<BackendInfo>> = {
    tensorflow: tryTensorflow,
    wasm: () => tryWasm(opts),
    cpu: tryCpu,
  };
  if (preferred !== undefined) {
    try {
      return await attempts[preferred]();
    } catch (e) {
      throw new Error(`ML backend '${preferred}' (forced by TRIAGE_BACKEND) cannot be used: ${errorText(e)}`, {
        cause: e,
      });
    }
  }
  const skipped: string[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      const info = await attempts[name]();
      if (skipped.length > 0) info.detail += ` [skipped ${skipped.join('; ')}]`;
      return info;
    } catch (e) {
      if (!(e instanceof BackendUnavailable)) throw e;
      skipped.push(`${name}: ${e.message}`);
      log(`ml backend: ${name} unavailable (${e.message})`);
    }
  }
  throw new Error(`no ML backend could be initialised: ${skipped.join('; ')}`);
}

/**
 * Silences tfjs's own console notes, the "Hi, looks like you are running TensorFlow.js in Node.js"
 * banner (printed on the first use of its cpu backend) among them: for code that picks its
 * backend on purpose and says which one it picked. tfjs's PROD flag gates only those notes (in
 * tfjs 4.22: its warn and log helpers and two platform notes), nothing that computes.
 */
export function quietTfjsNotes(): void {
  tf.env().set('PROD', true);
}

/**
 * Chooses and initialises the tfjs backend (see the file comment for the order) and returns what
 * was chosen. Idempotent: later calls return the same info; forcing a different backend after the
 * choice is an error.
 */
export async function initBackend(
  preferred?: BackendName,
  log: (msg: string) => void = () => {},
  opts: BackendOptions = {},
): Promise<BackendInfo> {
  if (preferred !== undefined && !BACKEND_NAMES.includes(preferred)) {
    throw new Error(`unknown ML backend '${String(preferred)}'; expected one of ${BACKEND_NAMES.join(', ')}`);
  }
  quietTfjsNotes();
  if (pending === undefined) {
    const started = select(preferred, log, opts).then((info) => {
      chosen = info;
      log(`ml backend: ${info.name} - ${info.detail} (tfjs ${info.tfjsVersion})`);
      return info;
    });
    pending = started;
    // A failed selection may be retried (e.g. with another TRIAGE_BACKEND).
    started.catch(() => {
      if (pending === started) pending = undefined;
    });
  }
  const info = await pending;
  if (preferred !== undefined && info.name !== preferred) {
    throw new Error(`ML backend is already '${info.name}' in this process; cannot switch to '${preferred}'`);
  }
  return info;
}
