/**
 * The X-ray path on the embedded runtime against Azurite: a small screening CNN trained on the
 * fixture radiographs is promoted for an xray instance; the radiographs are uploaded as JPEG and
 * as 16-bit DICOM (MONOCHROME2 and MONOCHROME1, with patient attributes); every upload gets
 * exactly one prediction record in the xray profile, flagged exactly when p(PNEUMONIA) reaches the
 * card's threshold, and no patient attribute reaches any record, name or metadata.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadConfig } from '../../../src/config';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { promote } from '../../../src/registry/registry';
import type { PredictionRecord } from '../../../src/storage/records/prediction';
import { readPreprocessedRecord } from '../../../src/storage/records/preprocessed';
import { initBackend } from '../../../src/ml/backend';
import { buildModel } from '../../../src/ml/models';
import { train } from '../../../src/ml/train';
import { predictProbabilities } from '../../../src/ml/evaluate';
import { DEFAULT_GROUP_PATTERN, compileGroupPattern, groupKey, loadImageFolder } from '../../../src/ml/data/folder';
import { ModelCard, saveModel } from '../../../src/ml/modelStore';
import { PROFILE_VERSIONS } from '../../../src/imaging/profiles';
import { DicomPatient, identifyingValues, madeUpPatient, radiographToDicom } from '../../../src/imaging/toDicom';
import { scanForValues } from '../../../src/cli/demoXray';
import { buildProgram } from '../../../src/cli/main';
import { readWorklist, type Worklist } from '../../../src/triage/worklist';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { capture } from '../../helpers/console';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'chest-xray');
const SIZE = 32;
const CLASSES = ['NORMAL', 'PNEUMONIA'];
const settings = {
  RETRAIN_SCHEDULE: '0 0 0 1 1 *',
  SWEEP_SCHEDULE: '0 0 0 1 1 *',
  TRIAGE_PROFILE: 'xray',
  TRIAGE_XRAY_SIZE: String(SIZE),
};

interface Upload {
  name: string;
  data: Buffer;
  source: string;
  format: 'jpeg' | 'MONOCHROME2' | 'MONOCHROME1';
}

describe('chest X-ray screening on the embedded runtime', () => {
  let store: BlobStore;
  let rt: EmbeddedRuntime;
  let card: ModelCard;
  const uploads: Upload[] = [];
  const patients = new Map<string, DicomPatient>();
  /** p(PNEUMONIA) of the JPEG fixtures as the model computes it outside the pipeline. */
  const localP = new Map<string, number>();

  beforeAll(async () => {
    store = await freshStore();
    const config = loadConfig({
      AzureWebJobsStorage: testConnectionString(),
      ...settings,
      TRIAGE_LOCAL_POLL_MS: '50',
      TRIAGE_LOCAL_HTTP_PORT: '0',
      TRIAGE_MODEL_REFRESH_MS: '0',
    });

    // A small screening CNN, trained briefly on every fixture (what it learns does not matter here;
    // what is checked is that serving applies it and its card faithfully).
    const backend = await initBackend();
    const data = await loadImageFolder(FIXTURES, { profile: 'xray', xraySize: SIZE, testFraction: 0 });
    expect(data.train.classNames).toEqual(CLASSES);
    const model = buildModel('screen', { inputShape: [SIZE, SIZE, 1], classNames: CLASSES, seed: 5 });
    await train(model, data.train, { epochs: 2, batchSize: 5, validationSplit: 0, patience: 0, seed: 5 });
    const probs = await predictProbabilities(model, data.train);
    // Every fourth fixture is uploaded (both classes; a few minutes on a busy machine, not more).
    const sources = (data.train.names ?? []).filter((_, i) => i % 4 === 0);
    (data.train.names ?? []).forEach((n, i) => {
      if (sources.includes(n)) localP.set(n, probs[i * 2 + 1] ?? NaN);
    });
    // The threshold: between the two middle scores, so some radiographs are flagged and some cleared.
    const sorted = [...localP.values()].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    const threshold = ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 1)) / 2;
    card = {
      version: 'xray-1',
      createdAt: new Date().toISOString(),
      architecture: 'screen',
      backend: { name: backend.name, tfjsVersion: backend.tfjsVersion },
      data: {
        source: `folder:${FIXTURES}:train`,
        manifestHash: 'test',
        trainImages: data.train.labels.length,
        validationImages: 0,
      },
      preprocessing: { profile: 'xray', version: PROFILE_VERSIONS.xray },
      classNames: CLASSES,
      inputShape: [SIZE, SIZE, 1],
      metrics: {},
      temperature: 1,
      thresholds: {
        screening: { positiveClass: 'PNEUMONIA', targetSensitivity: 0.99, threshold, validationSpared: 0 },
      },
    };
    await saveModel(store, model, card);
    model.dispose();
    await promote(store, 'xray-1', { by: 'test', reason: 'screening model for the xray instance', instance: config });

    // Every fixture as JPEG, and as DICOM: in turn MONOCHROME2 with 12 bits stored and MONOCHROME1 with 16.
    const group = compileGroupPattern(DEFAULT_GROUP_PATTERN);
    for (const [i, source] of sources.entries()) {
      const jpeg = readFileSync(join(FIXTURES, source));
      const key = groupKey(group, basename(source)).key;
      const patient = patients.get(key) ?? madeUpPatient();
      patients.set(key, patient);
      const stem = source.replace(/\.jpeg$/, '');
      uploads.push({ name: `ward 3/jpeg/${source}`, data: jpeg, source, format: 'jpeg' });
      const photometric = i % 2 === 0 ? 'MONOCHROME2' : 'MONOCHROME1';
      uploads.push({
        name: `ward 3/dicom/${stem}.dcm`,
        data: await radiographToDicom(jpeg, {
          photometric,
          bitsStored: photometric === 'MONOCHROME2' ? 12 : 16,
          patient,
        }),
        source,
        format: photometric,
      });
    }
    expect(new Set(sources.map((n) => n.split('/')[0]))).toEqual(new Set(CLASSES));
    expect(uploads.length).toBeGreaterThanOrEqual(12);
    expect(uploads.filter((u) => u.format === 'MONOCHROME1').length).toBeGreaterThan(0);

    rt = await EmbeddedRuntime.start({ config, settings, log: quietLog });
    for (const u of uploads) await store.put(CONTAINERS.uploads, u.name, u.data);
    await rt.waitForIdle(600_000);
  }, 600_000);

  afterAll(async () => {
    await rt?.stop();
    rt?.deps.models.dispose();
  });

  it('gives every upload exactly one prediction record, in the xray profile, with every class by name', async () => {
    const predictions: string[] = [];
    for await (const e of store.list(CONTAINERS.predictions)) predictions.push(e.name);
    expect(predictions.sort()).toEqual(uploads.map((u) => paths.prediction(u.name)).sort());
    const rejected: string[] = [];
    for await (const e of store.list(CONTAINERS.rejected)) rejected.push(e.name);
    expect(rejected).toEqual([]);
    for (const u of uploads) {
      const p = (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(u.name)))?.value;
      expect(p).toBeDefined();
      if (p === undefined) continue;
      expect(p.upload).toBe(u.name);
      expect(p.model.version).toBe('xray-1');
      expect(p.preprocessing).toEqual({ profile: 'xray', version: PROFILE_VERSIONS.xray });
      expect(p.classNames).toEqual(CLASSES);
      expect(p.threshold).toEqual({
        kind: 'screening',
        positiveClass: 'PNEUMONIA',
        value: card.thresholds.screening?.threshold,
      });
      expect(Object.keys(p.probabilities).sort()).toEqual(CLASSES);
      expect((p.probabilities.NORMAL ?? 0) + (p.probabilities.PNEUMONIA ?? 0)).toBeCloseTo(1, 4);
      const pre = await readPreprocessedRecord(store, u.name);
      expect(pre?.shape).toEqual([SIZE, SIZE, 1]);
      if (u.format === 'jpeg') expect(pre?.source.format).toBe('jpeg');
      else
        expect(pre?.dicom).toMatchObject({
          photometricInterpretation: u.format,
          bitsStored: u.format === 'MONOCHROME2' ? 12 : 16,
        });
    }
  });

  it("flags a radiograph exactly when p(PNEUMONIA) reaches the card's threshold", async () => {
    const threshold = card.thresholds.screening?.threshold ?? NaN;
    let flagged = 0;
    for (const u of uploads) {
      const p = (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(u.name)))?.value;
      if (p === undefined) throw new Error(`no prediction for ${u.name}`);
      const pos = p.probabilities.PNEUMONIA ?? NaN;
      // Records round probabilities to 6 decimals; the decision used the unrounded value.
      if (Math.abs(pos - threshold) > 1e-6) expect(p.review.reasons.includes('abnormal')).toBe(pos >= threshold);
      expect(p.review.reasons).not.toContain('low-confidence');
      expect(p.review.flagged).toBe(p.review.reasons.length > 0);
      expect((await store.head(CONTAINERS.flagged, paths.flagged(u.name))) !== undefined).toBe(p.review.flagged);
      if (p.review.flagged) flagged++;
      // The pipeline scores what the model scores outside it: exactly for the JPEG, and for its
      // DICOM copies up to the resampling difference of the two decoders (measured: at most 0.0032).
      const local = localP.get(u.source) ?? NaN;
      expect(Math.abs(pos - local)).toBeLessThan(u.format === 'jpeg' ? 1e-4 : 0.02);
    }
    expect(flagged).toBeGreaterThan(0);
    expect(flagged).toBeLessThan(uploads.length);
  });

  it('shows on every worklist item what the reviewer decides on, in the HTTP worklist, the CLI and its --json', async () => {
    const threshold = card.thresholds.screening?.threshold ?? NaN;
    const res = await fetch(`http://127.0.0.1:${rt.httpPort}/api/worklist?pageSize=500`);
    expect(res.status).toBe(200);
    const http = (await res.json()) as Worklist;
    expect(http.items.length).toBeGreaterThan(0);
    for (const item of http.items) {
      const p = (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(item.upload)))?.value;
      if (p === undefined) throw new Error(`no prediction for ${item.upload}`);
      expect(item).toMatchObject({
        topClass: p.topClass,
        confidence: p.confidence,
        screening: { positiveClass: 'PNEUMONIA', probability: p.probabilities.PNEUMONIA, threshold },
      });
      expect(item.confidenceThreshold).toBeUndefined();
    }

    const cli = async (args: string[]): Promise<string[]> => {
      const c = capture();
      try {
        await buildProgram(() => rt.deps).parseAsync(['node', 'triage', 'worklist', '--page-size', '500', ...args]);
      } finally {
        c.restore();
      }
      return c.out;
    };
    const json = JSON.parse((await cli(['--json'])).join('\n')) as Worklist;
    expect(json.items).toEqual(http.items);
    const lines = await cli([]);
    const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
    for (const item of http.items) {
      const line = lines.find((l) => l.endsWith(item.upload));
      expect(line).toContain(`${item.topClass ?? '?'} ${pct(item.confidence ?? NaN)}`);
      expect(line).toContain(`PNEUMONIA ${pct(item.screening?.probability ?? NaN)} (flag >= ${pct(threshold)})`);
    }

    // A record written before records named their threshold still lists, without the screening figures.
    const [first] = http.items;
    if (first === undefined) throw new Error('empty worklist');
    const flag = await store.getJson<Record<string, unknown>>(CONTAINERS.flagged, paths.flagged(first.upload));
    const head = await store.head(CONTAINERS.flagged, paths.flagged(first.upload));
    if (flag === undefined || head === undefined) throw new Error('no flag');
    const older = { ...flag.value };
    delete older.threshold;
    await store.putJson(CONTAINERS.flagged, paths.flagged(first.upload), older, { metadata: head.metadata });
    const fromOlder = (await readWorklist(store, { page: 1, pageSize: 500 }, { maxAgeMs: 0 })).items.find(
      (i) => i.upload === first.upload,
    );
    expect(fromOlder).toMatchObject({ topClass: first.topClass, confidence: first.confidence });
    expect(fromOlder?.screening).toBeUndefined();
    await store.putJson(CONTAINERS.flagged, paths.flagged(first.upload), flag.value, { metadata: head.metadata });
  });

  it('lets no patient attribute of the DICOM files reach a record, a blob name or blob metadata', async () => {
    const values = [...patients.values()].flatMap(identifyingValues);
    expect(values.length).toBeGreaterThanOrEqual(5 * patients.size);
    let checked = 0;
    for await (const c of store.service.listContainers()) {
      if (c.name === CONTAINERS.uploads) continue;
      for await (const e of store.list(c.name, undefined, true)) {
        const blob = await store.get(c.name, e.name);
        const text = [e.name, JSON.stringify(e.metadata), blob?.data.toString('latin1') ?? ''].join('\n');
        for (const v of values)
          if (text.includes(v)) throw new Error(`${c.name}/${e.name} holds the patient attribute ${v}`);
        checked++;
      }
    }
    // An .npy and a prediction per upload, the flags, the model's files, the runtime's receipts.
    expect(checked).toBeGreaterThan(2 * uploads.length);

    // The demo's scan finds a planted value (the uploads themselves hold every one).
    const clean = await scanForValues(
      store,
      [CONTAINERS.predictions, CONTAINERS.flagged, CONTAINERS.rejected, CONTAINERS.preprocessed],
      values,
    );
    expect(clean.leaks).toEqual([]);
    expect(clean.blobs).toBeGreaterThanOrEqual(2 * uploads.length);
    const [patient] = patients.values();
    if (patient === undefined) throw new Error('no patient');
    await store.put(
      CONTAINERS.rejected,
      'planted/leak.json',
      Buffer.from(JSON.stringify({ note: `for ${patient.patientId}` })),
      { metadata: { who: patient.accessionNumber } },
    );
    const planted = await scanForValues(store, [CONTAINERS.rejected], values);
    expect(planted.leaks).toEqual([
      { container: CONTAINERS.rejected, blob: 'planted/leak.json', where: 'metadata', value: patient.accessionNumber },
      { container: CONTAINERS.rejected, blob: 'planted/leak.json', where: 'body', value: patient.patientId },
    ]);
    const inUploads = await scanForValues(store, [CONTAINERS.uploads], values);
    expect(inUploads.leaks.length).toBe(uploads.filter((u) => u.format !== 'jpeg').length);
  });
});
