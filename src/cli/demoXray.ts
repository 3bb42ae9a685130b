/**
 * `npm run demo -- --xray <folder>`: chest X-ray screening end to end on the embedded runtime.
 *   1. Starts Azurite with its own data folder (.azurite-xray: the digit demo's models and records
 *      never mix with these) and the function app in the xray profile.
 *   2. Trains the screening CNN on the folder (one subfolder per class) with `triage train
 *      --profile xray --positive-class ...`, whose patient-held-out test split the demo keeps for
 *      itself; promotes it. A promoted model trained by this demo on the same folder, split and
 *      size is reused.
 *   3. Uploads the held-out images through the upload path: a share converted to 16-bit DICOM
 *      (MONOCHROME2 and MONOCHROME1, 12 and 16 bits stored, with a VOI window and made-up patient
 *      attributes), the rest as they are.
 *   4. Waits for every upload's record, then prints AUROC, sensitivity, specificity (the share of
 *      negatives cleared without review), the flagged share, throughput, timings, and the model's
 *      training speed and backend; and checks that no patient attribute reached any record.
 */
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config';
import type { Config } from '../config';
import { buildDeps } from '../composition';
import type { AzuriteHandle } from '@image-triage/local-functions-host';
import type { EmbeddedRuntime } from '../local/runtime';
import { mergedSettings, projectRoot } from '../local/settings';
import { findCard, incompatibility, promote, readCurrent } from '../registry/registry';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS } from '../storage/layout';
import type { ModelCard } from '../ml/modelStore';
import { auroc } from '../ml/calibration';
import { compileGroupPattern, groupKey, listFiles } from '../ml/data/folder';
import { isTestName } from '../ml/data/split';
import { sortClassNames } from '../ml/data/dataset';
import { DicomPatient, identifyingValues, madeUpPatient, radiographToDicom } from '../imaging/toDicom';
import { connectLocalStorage, pct, startFunctionApp, stopLocal, waitForRecords } from './demoSupport';
import { removeDemoRun } from './demoData';
import { planUpload, uploadAll } from './upload';
import { buildProgram } from './main';

/** Azurite data folder of the X-ray demo, beside the digit demo's `.azurite`. */
export const XRAY_DEMO_DATA_DIR = '.azurite-xray';

export interface XrayDemoOptions {
  folder: string;
  /** The abnormal class (default: a class folder named PNEUMONIA, else abnormal, any case). */
  positiveClass?: string;
  /** Share of patients held out (train's --test-split). */
  testSplit: number;
  /** The patient rule (train's --group; 'none' splits by image). */
  group: string;
  epochs?: number;
  /** Upload only this many of the held-out images (a stable pseudo-random choice). */
  limitHeldOut?: number;
  /** Share of the uploads converted to DICOM. */
  dicomShare: number;
  /** Train a new model even when a promoted one fits. */
  retrain: boolean;
  timeoutSeconds: number;
  /** Keep the run's uploads and records (default: removed at the end, as the digit demo does; the model stays). */
  keep: boolean;
}

export interface HeldOutFile {
  /** `<class>/<file>` inside the folder. */
  name: string;
  className: string;
  /** The patient key (or the name, without a patient rule). */
  patient: string;
}

/** Class folders of a labelled folder, in the order `triage train` gives their indices. */
export function classFolders(folder: string): string[] {
  return sortClassNames(
    readdirSync(folder, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name),
  );
}

/**
 * The images `triage train --data <folder> --test-split <testSplit> --group <group>` holds out as
 * its test split: patients (or, with group 'none', images) chosen by the loader's own rule.
 */
export async function heldOutFiles(folder: string, testSplit: number, group: string): Promise<HeldOutFile[]> {
  const pattern = group === 'none' ? undefined : compileGroupPattern(group);
  const out: HeldOutFile[] = [];
  for (const className of classFolders(folder)) {
    for (const f of await listFiles(path.join(folder, className))) {
      const name = `${className}/${f}`;
      const patient = pattern === undefined ? name : groupKey(pattern, path.basename(name)).key;
      if (testSplit > 0 && isTestName(patient, testSplit)) out.push({ name, className, patient });
    }
  }
  return out;
}

/** Where a value was found by scanForValues. */
export interface Leak {
  container: string;
  blob: string;
  where: 'name' | 'metadata' | 'body';
  value: string;
}

/**
 * A finder of any of `values` in a text: one hash lookup per position (on the first characters of
 * the values), then an exact comparison; values shorter than that are looked for with includes().
 */
export function valueFinder(values: readonly string[]): (text: string) => string | undefined {
  const k = 6;
  const short = values.filter((v) => v.length > 0 && v.length < k);
  const byPrefix = new Map<string, string[]>();
  for (const v of values) {
    if (v.length < k) continue;
    const p = v.slice(0, k);
    byPrefix.set(p, [...(byPrefix.get(p) ?? []), v]);
  }
  return (text) => {
    for (let i = 0; i + k <= text.length; i++) {
      const hits = byPrefix.get(text.slice(i, i + k));
      if (hits === undefined) continue;
      for (const v of hits) if (text.startsWith(v, i)) return v;
    }
    return short.find((v) => text.includes(v));
  };
}

/**
 * Looks for `values` in every blob of `containers`: names, metadata (keys and values) and every
 * byte of the body (read as Latin-1, so any ASCII value is found wherever it sits). Hexadecimal
 * runs of 32 characters or more (the SHA-256 of the upload, ETags) are masked first: by chance
 * they contain any given 8-digit date about once in a hundred demo runs.
 */
export async function scanForValues(
  store: BlobStore,
  containers: readonly string[],
  values: readonly string[],
): Promise<{ blobs: number; bytes: number; leaks: Leak[] }> {
  const find = valueFinder(values);
  const search = (text: string) => find(text.replace(/[0-9a-f]{32,}/gi, (h) => '#'.repeat(h.length)));
  const leaks: Leak[] = [];
  let blobs = 0;
  let bytes = 0;
  for (const container of containers) {
    for await (const e of store.list(container, undefined, true)) {
      blobs++;
      const inName = search(e.name);
      if (inName !== undefined) leaks.push({ container, blob: e.name, where: 'name', value: inName });
      const inMeta = search(
        Object.entries(e.metadata)
          .map(([key, v]) => `${key}=${v}`)
          .join('\n'),
      );
      if (inMeta !== undefined) leaks.push({ container, blob: e.name, where: 'metadata', value: inMeta });
      const body = await store.get(container, e.name);
      if (body === undefined) continue;
      bytes += body.data.length;
      const inBody = search(body.data.toString('latin1'));
      if (inBody !== undefined) leaks.push({ container, blob: e.name, where: 'body', value: inBody });
    }
  }
  return { blobs, bytes, leaks };
}

/** A stable pseudo-random order (by hash of the name), so a limited run still mixes classes and patients. */
function hashOrder<T extends { name: string }>(items: readonly T[]): T[] {
  const key = (s: string) => createHash('sha256').update(s).digest('hex');
  return [...items].sort((a, b) => key(a.name).localeCompare(key(b.name)));
}

function defaultPositiveClass(classes: readonly string[]): string | undefined {
  return classes.find((c) => c.toLowerCase() === 'pneumonia') ?? classes.find((c) => c.toLowerCase() === 'abnormal');
}

/** Why the promoted model cannot serve this run (undefined: it can): it must be a screening model this demo trained on the same folder, classes, split and input size. */
function notReusable(
  card: ModelCard,
  o: { config: Config; folder: string; classes: string[]; positiveClass: string; group: string; heldOut: number },
): string | undefined {
  const shape = incompatibility(card, o.config);
  if (shape !== undefined) return shape;
  if (card.thresholds.screening?.positiveClass !== o.positiveClass) return `it does not screen for ${o.positiveClass}`;
  if (card.data.source !== `folder:${o.folder}:train`)
    return `it was trained on ${card.data.source}, not on this folder's training split`;
  if (card.classNames.join('\n') !== o.classes.join('\n')) return `its classes are ${card.classNames.join(', ')}`;
  const pattern = o.group === 'none' ? undefined : compileGroupPattern(o.group).source;
  if (card.data.grouping?.pattern !== pattern) return 'its patient rule differs';
  if (card.data.testImages !== o.heldOut)
    return `it held out ${card.data.testImages ?? 0} images, this split holds out ${o.heldOut}`;
  return undefined;
}

export async function runXrayDemo(opts: XrayDemoOptions): Promise<number> {
  const folder = path.resolve(opts.folder);
  if (!statSync(folder, { throwIfNoEntry: false })?.isDirectory())
    throw new Error(`--xray ${opts.folder}: no such folder`);
  const classes = classFolders(folder);
  if (classes.length !== 2)
    throw new Error(
      `--xray ${opts.folder} needs two class subfolders (e.g. NORMAL and PNEUMONIA); found ${classes.length}: ${classes.join(', ')}`,
    );
  const positiveClass = opts.positiveClass ?? defaultPositiveClass(classes);
  if (positiveClass === undefined || !classes.includes(positiveClass)) {
    throw new Error(
      `the positive class ${positiveClass ?? '(none named PNEUMONIA or abnormal)'} is not one of the class folders ${classes.join(', ')}: say --positive-class`,
    );
  }
  const negatives = classes.filter((c) => c !== positiveClass).join('/');
  const allHeldOut = await heldOutFiles(folder, opts.testSplit, opts.group);
  if (allHeldOut.length === 0) throw new Error(`--test-split ${opts.testSplit} holds out no image of ${folder}`);
  const heldOut = opts.limitHeldOut === undefined ? allHeldOut : hashOrder(allHeldOut).slice(0, opts.limitHeldOut);

  const settings = mergedSettings();
  settings.TRIAGE_PROFILE = 'xray';
  const dataDir = path.resolve(projectRoot(), XRAY_DEMO_DATA_DIR);
  let azurite: AzuriteHandle | undefined;
  let runtime: EmbeddedRuntime | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  try {
    azurite = await connectLocalStorage(settings, dataDir);
    const config = loadConfig({ ...settings, TRIAGE_LOCAL_HTTP_PORT: '0', TRIAGE_MODEL_REFRESH_MS: '0' });
    const deps = buildDeps(config, { instanceId: 'demo-xray' });
    const store = deps.store;
    await store.ensureContainers();
    console.log(
      `Folder ${folder}: classes ${classes.join(', ')}, positive ${positiveClass}; ${allHeldOut.length} images of ${new Set(allHeldOut.map((f) => f.patient)).size} patients held out (--test-split ${opts.testSplit}, patient rule ${opts.group === 'none' ? 'none' : `/${opts.group}/`}); xray profile at ${config.xraySize}x${config.xraySize}.`,
    );

    // 2. A screening model.
    const current = await readCurrent(store);
    const currentCard = current === undefined ? undefined : await findCard(store, current.value.version);
    let why: string | undefined;
    if (current === undefined) why = 'no model is promoted yet';
    else if (opts.retrain) why = '--retrain';
    else if (currentCard === undefined) why = `the promoted model ${current.value.version} has no card`;
    else {
      const misfit = notReusable(currentCard, {
        config,
        folder,
        classes,
        positiveClass,
        group: opts.group,
        heldOut: allHeldOut.length,
      });
      if (misfit !== undefined) why = `the promoted model ${current.value.version} does not fit: ${misfit}`;
    }
    let trainSeconds: number | undefined;
    let version: string;
    if (why === undefined && current !== undefined) {
      version = current.value.version;
      console.log(`Reusing the promoted model ${version} (trained on this folder without the held-out patients).`);
    } else {
      version = `demo-xray-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
      console.log(`\nTraining a screening model (${why}).`);
      const argv = [
        'node',
        'triage',
        'train',
        '--data',
        folder,
        '--profile',
        'xray',
        '--positive-class',
        positiveClass,
        '--test-split',
        String(opts.testSplit),
        '--group',
        opts.group,
        '--store',
        '--version',
        version,
        '--no-plots',
      ];
      if (opts.epochs !== undefined) argv.push('--epochs', String(opts.epochs));
      console.log(`  triage ${argv.slice(2).join(' ')}`);
      const t0 = Date.now();
      await buildProgram(() => deps).parseAsync(argv);
      trainSeconds = (Date.now() - t0) / 1000;
      await promote(store, version, {
        by: 'demo',
        reason: `screening model trained by npm run demo -- --xray on ${folder}`,
        instance: config,
      });
      console.log(`Promoted ${version}.`);
    }
    const card = await findCard(store, version);
    if (card === undefined) throw new Error(`model ${version} has no card`);
    const threshold = card.thresholds.screening?.threshold;

    // 1b. The function app in the xray profile, unless npm start already runs one on this data folder.
    if (azurite !== undefined) {
      runtime = await startFunctionApp(config, settings);
    }

    // 3. The held-out images, a share as DICOM with made-up patient attributes.
    const work = mkdtempSync(path.join(os.tmpdir(), 'triage-demo-xray-'));
    const prefix = `demo-xray-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}/`;
    // Each run's blobs left behind would grow Azurite's metadata database, which it saves whole on
    // every acknowledged write: later runs, and npm start on this folder, would get slower.
    if (!opts.keep && azurite !== undefined) cleanup = async () => void (await removeDemoRun(store, prefix));
    const patients = new Map<string, DicomPatient>();
    const formats = new Map<string, string>();
    const truth = new Map<string, string>();
    let dicomCount = 0;
    const t0 = Date.now();
    for (const [i, f] of heldOut.entries()) {
      const asDicom = Math.floor((i + 1) * opts.dicomShare) > Math.floor(i * opts.dicomShare);
      let rel = f.name;
      mkdirSync(path.join(work, path.dirname(rel)), { recursive: true });
      if (asDicom) {
        const photometric = dicomCount % 2 === 0 ? 'MONOCHROME2' : 'MONOCHROME1';
        const bitsStored = Math.floor(dicomCount / 2) % 2 === 0 ? 12 : 16;
        dicomCount++;
        const patient = patients.get(f.patient) ?? madeUpPatient();
        patients.set(f.patient, patient);
        rel = `${f.name.replace(/\.[^./]*$/, '')}.dcm`;
        writeFileSync(
          path.join(work, rel),
          await radiographToDicom(readFileSync(path.join(folder, f.name)), { photometric, bitsStored, patient }),
        );
        formats.set(prefix + rel, `DICOM ${photometric} ${bitsStored}-bit`);
      } else {
        copyFileSync(path.join(folder, f.name), path.join(work, rel));
        formats.set(prefix + rel, path.extname(rel).slice(1).toUpperCase() || 'file');
      }
      truth.set(prefix + rel, f.className);
    }
    const convertSeconds = (Date.now() - t0) / 1000;
    const items = planUpload(work, prefix);
    const mix = new Map<string, number>();
    for (const fmt of formats.values()) mix.set(fmt, (mix.get(fmt) ?? 0) + 1);
    console.log(
      `\nUploading ${items.length} held-out radiographs under uploads/${prefix} (${[...mix].map(([k, n]) => `${n} ${k}`).join(', ')}; ${patients.size} made-up patients in the DICOM files, converted in ${convertSeconds.toFixed(1)} s)`,
    );
    const bar = new cliProgress.SingleBar(
      {
        format: 'upload [{bar}] {value}/{total} files',
        noTTYOutput: true,
        notTTYSchedule: 2000,
        stream: process.stderr,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(items.length, 0);
    const started = Date.now();
    const up = await uploadAll(store, items, { concurrency: 16, onProgress: (p) => bar.update(p.done + p.failed) });
    bar.stop();
    const uploadSeconds = (Date.now() - started) / 1000;
    rmSync(work, { recursive: true, force: true });
    if (up.failed.length > 0) throw new Error(`${up.failed.length} uploads failed: ${up.failed[0]?.error}`);

    // 4. Every record.
    const names = items.map((i) => i.name);
    const done = await waitForRecords(store, names, prefix, opts.timeoutSeconds);
    const seconds = (Date.now() - started) / 1000;

    // 5. Figures.
    const scores: number[] = [];
    const positive: boolean[] = [];
    let pos = 0;
    let posFlagged = 0;
    let neg = 0;
    let negCleared = 0;
    let flagged = 0;
    const predictMs: number[] = [];
    const totalMs: number[] = [];
    const rejections: string[] = [];
    for (const [name, r] of done) {
      if (r.kind === 'rejection') {
        rejections.push(`${name}: ${r.rec.code} (${r.rec.message})`);
        continue;
      }
      const isPos = truth.get(name) === positiveClass;
      scores.push(r.rec.probabilities[positiveClass] ?? 0);
      positive.push(isPos);
      if (r.rec.review.flagged) flagged++;
      if (isPos) {
        pos++;
        if (r.rec.review.flagged) posFlagged++;
      } else {
        neg++;
        if (!r.rec.review.flagged) negCleared++;
      }
      predictMs.push(r.rec.timings.predictMs);
      totalMs.push(r.rec.timings.totalMs);
    }
    const scored = scores.length;
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)] ?? NaN);
    };
    const values = [...new Set([...patients.values()].flatMap(identifyingValues))];
    const scan = await scanForValues(
      store,
      [CONTAINERS.predictions, CONTAINERS.flagged, CONTAINERS.rejected, CONTAINERS.preprocessed],
      values,
    );
    const a = auroc(scores, positive);
    const tr = card.training;
    console.log('\n=== image-triage X-ray demo ===');
    console.log(
      `model                 ${version} (${card.architecture}, input ${card.inputShape.join('x')}, ${card.preprocessing.profile} v${card.preprocessing.version})`,
    );
    console.log(
      `training              ${tr ? `${tr.imagesPerSecond.toFixed(0)} images/s on ${card.backend.name} (tfjs ${card.backend.tfjsVersion}), ${tr.epochsRun} epochs (kept ${tr.bestEpoch}), ${card.data.trainImages} training + ${card.data.validationImages} validation images` : `no training record (backend ${card.backend.name})`}${trainSeconds !== undefined ? `; ${trainSeconds.toFixed(0)} s with preprocessing and evaluation` : '; reused'}`,
    );
    console.log(
      `threshold             p(${positiveClass}) >= ${threshold === undefined ? '(none: not a screening card)' : threshold.toFixed(6)} is flagged (chosen on the patient-held-out validation for ${pct(card.thresholds.screening?.targetSensitivity ?? 0, 1)} sensitivity)`,
    );
    console.log(`uploads               ${names.length} (${[...mix].map(([k, n]) => `${n} ${k}`).join(', ')})`);
    console.log(`scored                ${scored} (${pos} ${positiveClass}, ${neg} ${negatives})`);
    console.log(`rejected              ${rejections.length}`);
    for (const r of rejections.slice(0, 10)) console.log(`  ${r}`);
    console.log(`AUROC                 ${Number.isNaN(a) ? '- (needs both classes)' : a.toFixed(4)}`);
    console.log(
      `sensitivity           ${pct(posFlagged, pos)} (${posFlagged}/${pos} ${positiveClass} flagged for review)`,
    );
    console.log(
      `specificity           ${pct(negCleared, neg)} (${negCleared}/${neg} ${negatives} cleared without review)`,
    );
    console.log(`flagged for review    ${pct(flagged, scored)} (${flagged}/${scored})`);
    console.log(
      `throughput            ${(names.length / seconds).toFixed(1)} uploads/s (${seconds.toFixed(1)} s from first upload to last record; uploading ${uploadSeconds.toFixed(1)} s)`,
    );
    console.log(
      `timings               infer per image: median ${median(totalMs).toFixed(1)} ms, forward pass ${median(predictMs).toFixed(1)} ms`,
    );
    console.log(
      `patient attributes    ${scan.leaks.length === 0 ? 'none' : `${scan.leaks.length} FOUND`} of the ${values.length} made-up values in the names, metadata or bodies of ${scan.blobs} blobs (${(scan.bytes / 1e6).toFixed(1)} MB) of predictions/, flagged/, rejected/, preprocessed/`,
    );
    for (const l of scan.leaks.slice(0, 10)) console.log(`  ${l.container}/${l.blob} (${l.where}): ${l.value}`);
    if (cleanup !== undefined) {
      console.log(
        `records               removed from ${XRAY_DEMO_DATA_DIR}/ at the end (run with --keep to look at them); the model stays`,
      );
    } else {
      console.log(
        `records               predictions/${prefix}  flagged/${prefix}  rejected/${prefix}  (Azurite data in ${dataDir})`,
      );
      console.log(
        `see them with          TRIAGE_LOCAL_DATA_DIR=${XRAY_DEMO_DATA_DIR} TRIAGE_PROFILE=xray npm start   then   TRIAGE_LOCAL_DATA_DIR=${XRAY_DEMO_DATA_DIR} npm run triage -- worklist`,
      );
    }
    if (done.size !== names.length) return 1;
    if (scan.leaks.length > 0) {
      console.error('patient attributes reached records: see above');
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
