/** Shared set-up of the retraining tests: labeled images in storage, waiting for runs. */
import { loadConfig, Config } from '../../../src/config';
import { BlobStore, sha256 } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { SOURCE_SHA_KEY } from '../../../src/storage/records/write';
import { RECORD_KEY } from '../../../src/storage/records/preprocessed';
import { encodeNpy } from '../../../src/imaging/npy';
import { loadMnistPackage } from '../../../src/ml/data/mnistPackage';
import type { LabeledImages } from '../../../src/ml/data/dataset';
import { isFinished, listRuns, readStatus, RunStatus } from '../../../src/jobs/runs';
import { testConnectionString } from '../../helpers/azurite';
import type { EmbeddedRuntime } from '../../../src/local/runtime';
import { asJson } from '../../helpers/http';

/** Settings of a tiny retraining setup: an MLP, two epochs, a small slice of the base data. */
export function retrainConfig(extra: Record<string, string> = {}): Config {
  return loadConfig({
    AzureWebJobsStorage: testConnectionString(),
    TRIAGE_LOCAL_POLL_MS: '50',
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_MODEL_REFRESH_MS: '0',
    RETRAIN_MODEL: 'mlp',
    RETRAIN_EPOCHS: '2',
    RETRAIN_MIN_NEW_LABELS: '20',
    RETRAIN_BASE_DATA: 'none',
    ...extra,
  });
}

export const NEVER = '0 0 0 1 1 *';

let mnist: { train: LabeledImages; test: LabeledImages } | undefined;
export function digits(): { train: LabeledImages; test: LabeledImages } {
  mnist ??= loadMnistPackage();
  return mnist;
}

export interface Labeled {
  name: string;
  sha256: string;
  trueClass: string;
}

/**
 * Writes images of the mnist test split as if uploaded, preprocessed and labeled: the .npy (with
 * the source hash in its metadata, as preprocess writes it) and a label record. `classOf` picks the
 * label (default: the true class).
 */
export async function writeLabeled(
  store: BlobStore,
  opts: { prefix: string; from: number; count: number; classOf?: (l: Labeled, i: number) => string },
): Promise<Labeled[]> {
  const { test } = digits();
  const out: Labeled[] = [];
  for (let k = 0; k < opts.count; k++) {
    const i = opts.from + k;
    const pixels = test.images.slice(i * 784, (i + 1) * 784);
    const name = `${opts.prefix}/${i}.png`;
    const sha = sha256(Buffer.concat([Buffer.from(name), Buffer.from(pixels.buffer)]));
    const trueClass = test.classNames[test.labels[i] as number] as string;
    const l = { name, sha256: sha, trueClass };
    const record = JSON.stringify({ source: { sha256: sha }, profile: { name: 'mnist', version: '1.0.0' } });
    await store.put(CONTAINERS.preprocessed, paths.preprocessed(name), encodeNpy(pixels, [28, 28, 1]), {
      metadata: { [SOURCE_SHA_KEY]: sha, [RECORD_KEY]: record },
    });
    await store.putJson(CONTAINERS.labels, paths.label(name), {
      upload: name,
      class: opts.classOf ? opts.classOf(l, k) : trueClass,
      labeledBy: 'test',
      labeledAt: new Date().toISOString(),
      source: { sha256: sha },
      history: [],
    });
    out.push(l);
  }
  return out;
}

/**
 * Polls runs/ until `runId` (or, without it, the first run) has finished and, for a local trainer,
 * until the launcher has seen the child exit (it then writes runs/{runId}/trainer.log).
 */
export async function waitForRun(store: BlobStore, runId?: string, timeoutMs = 100_000): Promise<RunStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = runId !== undefined ? (await readStatus(store, runId))?.value : (await listRuns(store)).at(-1);
    const exited =
      s?.launcher?.kind !== 'local' ||
      (await store.head(CONTAINERS.runs, paths.runFile(s.runId, 'trainer.log'))) !== undefined;
    if (s !== undefined && isFinished(s.state) && exited) return s;
    if (Date.now() > deadline)
      throw new Error(`run ${runId ?? '(first)'} not finished after ${timeoutMs} ms: ${JSON.stringify(s ?? null)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Calls the runtime's HTTP API: status and JSON body. */
export function api(rt: EmbeddedRuntime) {
  return async (p: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`http://127.0.0.1:${rt.httpPort}/api/${p}`, asJson(init));
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
}
