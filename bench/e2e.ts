/**
 * End to end on the embedded runtime: N digit PNGs (default 10,000) from upload to prediction
 * record, against an in-memory Azurite. Prints images/s and per-stage latency percentiles.
 *
 *   npm run build && node dist/bench/e2e.js [--count 10000] [--concurrency 8] [--epochs 3] [--plain-azurite]
 *
 * The model is the default CNN, trained for `--epochs` (default 3, about 30 s, before the clock
 * starts) on the mnist training split, so that the share of flagged images (one more record write
 * each) is a realistic one; the uploads are the 2,000 held-out digits, repeated under new names.
 * `--epochs 0` scores with untrained weights instead: every image is flagged (the worst case).
 * Uploads come from a separate process (bench/uploader.ts, 16 at a time), as clients' uploads come
 * from outside the function app; this process runs the embedded runtime.
 * The peer, measured in the same run on the same Azurite, is the storage floor: the same uploads
 * (same uploader), then per image one download and the two record writes a minimal pipeline
 * cannot avoid (no decoding, no model) at the same concurrency. Ratio = our images/s / the
 * floor's images/s. For both it prints the CPU time per image of this process, the uploader and
 * Azurite, and the storage requests per image.
 * `--plain-azurite` runs Azurite without the preload of @image-triage/local-functions-host (azuritePreload.js).
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import diagnostics from 'node:diagnostics_channel';
import sharp from 'sharp';
import { mapLimit } from '../src/util/mapLimit';
import { loadConfig } from '../src/config';
import { startAzurite } from '@image-triage/local-functions-host';
import { EmbeddedRuntime } from '../src/local/runtime';
import { BlobStore } from '../src/storage/blobStore';
import { CONTAINERS, paths } from '../src/storage/layout';
import { loadMnistPackage } from '../src/ml/data/mnistPackage';
import { buildModel } from '../src/ml/models';
import { saveModel, ModelCard } from '../src/ml/modelStore';
import { BackendInfo, initBackend } from '../src/ml/backend';
import { promote } from '../src/registry/registry';
import { buildDeps } from '../src/composition';
import { buildProgram } from '../src/cli/main';
import type { UploadJob, UploaderMessage } from './uploader';
import { PROFILE_VERSIONS } from '../src/imaging/profiles';
import type { PredictionRecord } from '../src/storage/records/prediction';
import { readPreprocessedRecord } from '../src/storage/records/preprocessed';

function arg(name: string, dflt: number, min = 1): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return v;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** CPU milliseconds a process has used (Linux /proc; undefined elsewhere). */
function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime, in clock ticks of 1/100 s (USER_HZ)
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** HTTP requests this process sends (all of them go to Azurite here; the uploads go from the uploader's). */
let requestsSent = 0;
diagnostics.subscribe('http.client.request.start', () => {
  requestsSent++;
});

interface Meter {
  self: number;
  azurite: number | undefined;
  requests: number;
}

function meter(azuritePid: number | undefined): Meter {
  const u = process.cpuUsage();
  return { self: (u.user + u.system) / 1000, azurite: processCpuMs(azuritePid), requests: requestsSent };
}

/** CPU per image of this process, the uploader and Azurite; requests per image (the upload + this process's). */
function perImage(label: string, from: Meter, to: Meter, images: number, uploaderCpuMs: number): string {
  const az =
    from.azurite !== undefined && to.azurite !== undefined
      ? `${((to.azurite - from.azurite) / images).toFixed(2)} ms`
      : 'n/a';
  const requests = 1 + (to.requests - from.requests) / images;
  return `${label.padEnd(28)} this process ${((to.self - from.self) / images).toFixed(2)} ms, uploader ${(uploaderCpuMs / images).toFixed(2)} ms, Azurite ${az}; ${requests.toFixed(2)} requests per image`;
}

function stats(label: string, values: number[]): string {
  const s = [...values].sort((a, b) => a - b);
  return `${label.padEnd(28)} p50 ${percentile(s, 50).toFixed(0).padStart(6)} ms   p95 ${percentile(s, 95).toFixed(0).padStart(6)} ms   p99 ${percentile(s, 99).toFixed(0).padStart(6)} ms`;
}

/** The default CNN with untrained weights (`--epochs 0`): never confident, so every image is flagged. */
async function saveUntrained(store: BlobStore, backend: BackendInfo): Promise<void> {
  const model = buildModel('cnn', { seed: 1 });
  const card: ModelCard = {
    version: 'bench',
    createdAt: new Date().toISOString(),
    architecture: 'cnn',
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion },
    data: { source: 'untrained', manifestHash: '-', trainImages: 0, validationImages: 0 },
    preprocessing: { profile: 'mnist', version: PROFILE_VERSIONS.mnist },
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    inputShape: [28, 28, 1],
    metrics: {},
    temperature: 1,
    thresholds: { selective: { targetError: 0.005, threshold: 0.5, validationCoverage: 0 } },
  };
  await saveModel(store, model, card);
  model.dispose();
}

interface Uploads {
  /** When each upload was stored (epoch ms), filled in as the uploader reports. */
  uploadedAt: Map<string, number>;
  /** Resolves when every file is uploaded, with the uploader's CPU time. */
  done: Promise<{ cpuMs: number }>;
}

/** Uploads the files from a separate process (bench/uploader.ts), as clients outside the function app do. */
function uploadFromOutside(job: UploadJob): Uploads {
  const child = fork(path.join(__dirname, 'uploader.js'), [], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const uploadedAt = new Map<string, number>();
  const done = new Promise<{ cpuMs: number }>((resolve, reject) => {
    let finished: { cpuMs: number } | undefined;
    child.on('message', (m: UploaderMessage) => {
      if ('uploaded' in m) for (const [name, t] of m.uploaded) uploadedAt.set(name, t);
      else if ('done' in m) finished = { cpuMs: m.cpuMs };
      else reject(new Error(`uploader: ${m.error}`));
    });
    child.on('exit', (code) =>
      finished !== undefined
        ? resolve(finished)
        : reject(new Error(`uploader exited with code ${String(code)} before finishing`)),
    );
  });
  child.send(job);
  return { uploadedAt, done };
}

async function main(): Promise<void> {
  const count = arg('count', 10_000);
  const concurrency = arg('concurrency', 8);
  const epochs = arg('epochs', 3, 0);
  console.log(
    `e2e bench: ${count} digit PNGs, runtime concurrency ${concurrency}, model ${epochs === 0 ? 'untrained' : `trained ${epochs} epochs`}`,
  );
  const all = loadMnistPackage().test;
  const pngs: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    const k = i % all.labels.length;
    const raw = Buffer.alloc(784);
    for (let j = 0; j < 784; j++) raw[j] = Math.round((all.images[k * 784 + j] ?? 0) * 255);
    pngs.push({
      name: `bench/${String(i).padStart(5, '0')}.png`,
      data: await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    });
  }

  const plain = process.argv.includes('--plain-azurite');
  const azurite = await startAzurite({ tuned: !plain });
  const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
  try {
    await store.ensureContainers();
    // Peer: the storage floor.
    await store.container('floor').createIfNotExists();
    const floorMeter = meter(azurite.pid);
    const floorStart = performance.now();
    const floorUploader = await uploadFromOutside({
      connectionString: azurite.connectionString,
      container: 'floor',
      concurrency: 16,
      files: pngs,
    }).done;
    await mapLimit(pngs, concurrency, async (p) => {
      const b = await store.get('floor', p.name);
      await store.put('floor', `${p.name}.a.json`, b?.data ?? '');
      await store.put('floor', `${p.name}.b.json`, '{}');
    });
    const floorSeconds = (performance.now() - floorStart) / 1000;
    const floorEnd = meter(azurite.pid);
    await store.service.deleteContainer('floor');

    // Ours.
    const backend = await initBackend();
    if (epochs > 0) {
      const deps = buildDeps(loadConfig({ AzureWebJobsStorage: azurite.connectionString }), {
        store,
        instanceId: 'bench',
      });
      await buildProgram(() => deps).parseAsync([
        'node',
        'triage',
        'train',
        '--data',
        'mnist',
        '--model',
        'cnn',
        '--store',
        '--version',
        'bench',
        '--no-plots',
        '--epochs',
        String(epochs),
      ]);
    } else {
      await saveUntrained(store, backend);
    }
    await promote(store, 'bench', { by: 'bench', reason: 'bench' });
    const config = loadConfig({
      AzureWebJobsStorage: azurite.connectionString,
      TRIAGE_LOCAL_CONCURRENCY: String(concurrency),
      TRIAGE_LOCAL_POLL_MS: '100',
      TRIAGE_LOCAL_HTTP_PORT: '0',
    });
    const rt = await EmbeddedRuntime.start({
      config,
      settings: { SWEEP_SCHEDULE: '0 0 0 1 1 *', RETRAIN_SCHEDULE: '0 0 0 1 1 *' },
      log: {
        info: (m: string) => {
          if (/not scored|waits|superseded/.test(m)) console.warn(m);
        },
        warn: (m: string) => console.warn(m),
        error: console.error,
      },
    });
    const rssPeak = { v: 0 };
    const rssTimer = setInterval(() => (rssPeak.v = Math.max(rssPeak.v, process.memoryUsage().rss)), 200);
    const oursMeter = meter(azurite.pid);
    const start = performance.now();
    const startEpoch = Date.now();
    const uploads = uploadFromOutside({
      connectionString: azurite.connectionString,
      container: CONTAINERS.uploads,
      concurrency: 16,
      contentType: 'image/png',
      files: pngs,
    });
    const uploadedAt = uploads.uploadedAt;
    let uploadSeconds = NaN;
    const uploader = uploads.done.then((r) => {
      uploadSeconds = (performance.now() - start) / 1000;
      return r;
    });
    // Wait on the runtime's own counters (listing 10,000 records every second would load the
    // storage service the bench is measuring); confirm with the records once it is idle.
    let rejected = 0;
    let last = 0;
    let oursEnd: Meter | undefined;
    for (;;) {
      const st = rt.statistics;
      if (st.inFlight === 0 && st.queued === 0 && st.invocations >= count) {
        oursEnd ??= meter(azurite.pid);
        const n = await store.count(CONTAINERS.predictions);
        rejected = await store.count(CONTAINERS.rejected);
        if (n + rejected >= count) break;
        if (performance.now() - last > 30_000) {
          const have = new Set<string>();
          for await (const e of store.list(CONTAINERS.predictions)) have.add(e.name);
          const missing = pngs.filter((p) => !have.has(paths.prediction(p.name))).slice(0, 5);
          for (const m of missing) console.error('no prediction yet for', m.name);
          last = performance.now();
        }
      } else if (performance.now() - last > 10_000) {
        process.stderr.write(`  runtime ${JSON.stringify(st)}\n`);
        last = performance.now();
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    // Until the bench saw it all done: up to one polling interval and the confirming listings late.
    const polledSeconds = (performance.now() - start) / 1000;
    const uploaderCpu = await uploader;
    clearInterval(rssTimer);
    await rt.stop();
    rt.deps.models.dispose();

    const toPre: number[] = [];
    const toPred: number[] = [];
    const total: number[] = [];
    const predictMs: number[] = [];
    let batched = 0;
    let lastRecord = 0;
    await mapLimit(pngs, 16, async (p) => {
      const pre = await readPreprocessedRecord(store, p.name);
      const pred = await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(p.name));
      const up = uploadedAt.get(p.name);
      if (pre === undefined || pred === undefined || up === undefined) return;
      const tPre = Date.parse(pre.time);
      const tPred = Date.parse(pred.value.time);
      toPre.push(tPre - up);
      toPred.push(tPred - tPre);
      total.push(tPred - up);
      lastRecord = Math.max(lastRecord, tPred);
      predictMs.push(pred.value.timings.predictMs);
      batched += pred.value.timings.batchSize;
    });
    // From the first upload to the last prediction record written (records carry their time).
    const seconds = rejected === 0 && total.length === count ? (lastRecord - startEpoch) / 1000 : polledSeconds;
    const ours = count / seconds;
    const floor = count / floorSeconds;
    console.log('');
    console.log(`backend                      ${backend.name} (${backend.detail})`);
    console.log(
      `images                       ${count} (upload phase alone ${uploadSeconds.toFixed(1)} s), ${rejected} rejected`,
    );
    // Every flagged image costs one more record write.
    console.log(
      `flagged                      ${((100 * (await store.count(CONTAINERS.flagged))) / count).toFixed(1)}% (${epochs === 0 ? 'untrained model' : `model trained ${epochs} epochs`})`,
    );
    const codes = new Map<string, number>();
    for await (const e of store.list(CONTAINERS.rejected)) {
      const r = await store.getJson<{ code: string; message: string }>(CONTAINERS.rejected, e.name);
      codes.set(`${r?.value.code}: ${r?.value.message}`, (codes.get(`${r?.value.code}: ${r?.value.message}`) ?? 0) + 1);
    }
    for (const [c, n] of codes) console.log(`  rejected ${n} x ${c}`);
    console.log(
      `throughput                   ${ours.toFixed(0)} images/s upload-to-prediction (${seconds.toFixed(1)} s from the first upload to the last record; the bench saw it after ${polledSeconds.toFixed(1)} s)`,
    );
    console.log(
      `storage floor (peer)         ${floor.toFixed(0)} images/s (upload + 1 read + 2 writes per image, no image work)`,
    );
    console.log(`ratio ours / floor           ${(ours / floor).toFixed(2)}`);
    console.log(perImage('CPU per image (ours)', oursMeter, oursEnd ?? meter(azurite.pid), count, uploaderCpu.cpuMs));
    console.log(perImage('CPU per image (floor)', floorMeter, floorEnd, count, floorUploader.cpuMs));
    console.log(
      `Azurite                      ${plain ? 'as published (--plain-azurite)' : 'with the preload of @image-triage/local-functions-host'}`,
    );
    console.log(stats('upload -> preprocessed', toPre));
    console.log(stats('preprocessed -> prediction', toPred));
    console.log(stats('upload -> prediction', total));
    console.log(stats('forward pass per batch', predictMs));
    console.log(`mean inference batch         ${(batched / Math.max(1, total.length)).toFixed(1)} images`);
    console.log(
      `peak RSS (runtime process)   ${(rssPeak.v / 2 ** 20).toFixed(0)} MiB (Azurite runs in its own process)`,
    );
    console.log(
      `\nreproduce: npm run build && node dist/bench/e2e.js --count ${count} --concurrency ${concurrency} --epochs ${epochs}${plain ? ' --plain-azurite' : ''}`,
    );
  } finally {
    await azurite.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
