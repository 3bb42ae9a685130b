/**
 * What a status costs on a 10,000-blob account: `triage status` (collectStatus: exact, every
 * container listed) and GET /api/status on the embedded runtime (first call, then repeated calls),
 * against an in-memory Azurite filled with N blobs spread over the layout's containers as a
 * working account has them (uploads, their preprocessed images and predictions, some flagged,
 * rejected and labeled).
 *
 *   npm run build && node dist/bench/status.js [--blobs 10000] [--calls 20]
 */
import { loadConfig } from '../src/config';
import { startAzurite } from '@image-triage/local-functions-host';
import { EmbeddedRuntime, loadFunctionApp } from '../src/local/runtime';
import { BlobStore } from '../src/storage/blobStore';
import { CONTAINERS, paths } from '../src/storage/layout';
import { collectStatus } from '../src/storage/records/status';
import { mapLimit } from '../src/util/mapLimit';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

async function main(): Promise<void> {
  const blobs = arg('blobs', 10_000);
  const calls = arg('calls', 20);
  const azurite = await startAzurite({});
  const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
  let rt: EmbeddedRuntime | undefined;
  try {
    await store.ensureContainers();
    // Per 100 blobs: 30 uploads, 29 preprocessed, 1 rejected, 29 predictions, 6 flagged, 5 labels.
    const uploads = Math.round(blobs * 0.3);
    const writes: [string, string][] = [];
    for (let i = 0; i < uploads; i++) {
      const name = `batch-${i % 7}/${i}.png`;
      writes.push([CONTAINERS.uploads, name]);
      if (i % 30 === 0) {
        writes.push([CONTAINERS.rejected, paths.rejected(name)]);
        continue;
      }
      writes.push(
        [CONTAINERS.preprocessed, paths.preprocessed(name)],
        [CONTAINERS.predictions, paths.prediction(name)],
      );
      if (i % 5 === 1) writes.push([CONTAINERS.flagged, paths.flagged(name)]);
      if (i % 6 === 2) writes.push([CONTAINERS.labels, paths.label(name)]);
    }
    const t0 = performance.now();
    await mapLimit(writes, 16, ([c, n]) =>
      store.put(c, n, '{}', c === CONTAINERS.rejected ? { metadata: { code: 'truncated' } } : {}),
    );
    console.log(`filled ${writes.length} blobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const exact = [];
    for (let i = 0; i < 3; i++) exact.push((await timed(() => collectStatus(store))).ms);
    const check = await collectStatus(store);
    console.log(
      `collectStatus (triage status, exact)      median of 3: ${(median(exact) / 1000).toFixed(2)} s   [${exact.map((m) => (m / 1000).toFixed(2)).join(', ')}]  uploads ${check.uploads}, pending ${check.pendingPreprocess}`,
    );

    rt = await EmbeddedRuntime.start({
      config: loadConfig({ AzureWebJobsStorage: azurite.connectionString, TRIAGE_LOCAL_HTTP_PORT: '0' }),
      settings: { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' },
      functions: loadFunctionApp().filter((f) => f.trigger.kind === 'http'),
    });
    const url = `http://127.0.0.1:${rt.httpPort}/api/status`;
    const get = async (): Promise<Record<string, unknown>> => {
      const res = await fetch(url);
      if (res.status !== 200) throw new Error(`GET /api/status -> ${res.status}`);
      return (await res.json()) as Record<string, unknown>;
    };
    const first = await timed(get);
    const repeat = [];
    for (let i = 0; i < calls; i++) repeat.push((await timed(get)).ms);
    const last = await get();
    console.log(
      `GET /api/status, first call               ${(first.ms / 1000).toFixed(2)} s   uploads ${String(first.value.uploads)}`,
    );
    console.log(
      `GET /api/status, next ${calls} calls          median ${median(repeat).toFixed(1)} ms, max ${Math.max(...repeat).toFixed(1)} ms   (answer's ageSeconds ${typeof last.ageSeconds === 'number' ? last.ageSeconds : 'n/a'})`,
    );
  } finally {
    await rt?.stop();
    await azurite.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
