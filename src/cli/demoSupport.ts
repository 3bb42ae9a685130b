/** What both demos (digits, X-rays) share: a local storage account to run on and the wait for every upload's record. */
import { loadConfig, STORAGE_SETTING } from '../config';
import type { Config, Env } from '../config';
import { startAzurite, AzuriteHandle } from '@image-triage/local-functions-host';
import { EmbeddedRuntime } from '../local/runtime';
import { consoleLog } from '../util/log';
import { DEV_STORAGE, readEndpoint } from '../local/settings';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { PredictionRecord } from '../storage/records/prediction';
import type { RejectionRecord } from '../storage/records/rejection';

/**
 * Points `settings` at local storage when they name none (or the development storage): the
 * Azurite of an `npm start` that runs on `dataDir`, else a new Azurite keeping its data there
 * (returned, for the caller to stop). Storage settings naming a real account are left alone.
 */
export async function connectLocalStorage(settings: Env, dataDir: string): Promise<AzuriteHandle | undefined> {
  if (settings[STORAGE_SETTING] !== undefined && settings[STORAGE_SETTING] !== DEV_STORAGE) return undefined;
  // Settings are checked before Azurite starts: a configuration error is the only thing said.
  loadConfig({
    ...settings,
    [STORAGE_SETTING]: DEV_STORAGE,
    TRIAGE_LOCAL_HTTP_PORT: settings.TRIAGE_LOCAL_HTTP_PORT ?? '0',
  });
  const running = readEndpoint(dataDir);
  let alive = false;
  if (running !== undefined) {
    try {
      process.kill(running.pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
  }
  if (running !== undefined && alive) {
    settings[STORAGE_SETTING] = running.connectionString;
    console.log(`Using the embedded runtime that npm start runs (pid ${running.pid}).`);
    return undefined;
  }
  const azurite = await startAzurite({ location: dataDir });
  settings[STORAGE_SETTING] = azurite.connectionString;
  console.log(`Azurite on port ${azurite.port}, data in ${dataDir}`);
  return azurite;
}

/** The function app on the embedded runtime, quiet but for warnings and errors; the sweep every 30 s unless settings say otherwise. */
export function startFunctionApp(config: Config, settings: Env): Promise<EmbeddedRuntime> {
  return EmbeddedRuntime.start({
    config,
    settings: {
      ...settings,
      SWEEP_SCHEDULE: settings.SWEEP_SCHEDULE ?? '*/30 * * * * *',
      RETRAIN_SCHEDULE: settings.RETRAIN_SCHEDULE ?? '0 0 2 * * *',
    },
    log: { info() {}, warn: consoleLog.warn, error: consoleLog.error },
  });
}

/** Stops what a demo started: the function app (after running work), its model cache, Azurite. */
export async function stopLocal(
  runtime: EmbeddedRuntime | undefined,
  azurite: AzuriteHandle | undefined,
): Promise<void> {
  await runtime?.stop();
  runtime?.deps.models.dispose();
  await azurite?.stop();
}

export type TerminalRecord =
  { kind: 'prediction'; rec: PredictionRecord } | { kind: 'rejection'; rec: RejectionRecord };

/**
 * Waits until every upload in `names` (all under `prefix`) has its terminal record, a prediction
 * or a rejection, printing progress every 2 s; throws after `timeoutSeconds`.
 */
export async function waitForRecords(
  store: BlobStore,
  names: readonly string[],
  prefix: string,
  timeoutSeconds: number,
): Promise<Map<string, TerminalRecord>> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const done = new Map<string, TerminalRecord>();
  let lastPrint = 0;
  while (done.size < names.length) {
    const predicted = new Set<string>();
    for await (const e of store.list(CONTAINERS.predictions, prefix)) predicted.add(e.name);
    const rejected = new Set<string>();
    for await (const e of store.list(CONTAINERS.rejected, prefix)) rejected.add(e.name);
    for (const n of names) {
      if (done.has(n)) continue;
      if (predicted.has(paths.prediction(n))) {
        const r = await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(n));
        if (r !== undefined) done.set(n, { kind: 'prediction', rec: r.value });
      } else if (rejected.has(paths.rejected(n))) {
        const r = await store.getJson<RejectionRecord>(CONTAINERS.rejected, paths.rejected(n));
        if (r !== undefined) done.set(n, { kind: 'rejection', rec: r.value });
      }
    }
    if (Date.now() - lastPrint > 2000) {
      process.stderr.write(`  ${done.size}/${names.length} uploads have their record\n`);
      lastPrint = Date.now();
    }
    if (done.size >= names.length) break;
    if (Date.now() > deadline)
      throw new Error(`only ${done.size} of ${names.length} uploads got a record within ${timeoutSeconds} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return done;
}

export function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`;
}
