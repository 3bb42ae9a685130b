/**
 * Upload -> preprocess -> infer -> prediction and flag records, on the embedded runtime against
 * Azurite, with real (small) models: promotion and rollback switch the model without a restart,
 * images wait for a first model and are scored by the sweep, and the review API validates labels.
 */
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import sharp from 'sharp';
import { loadConfig } from '../../../src/config';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { promote, rollback, readCurrent } from '../../../src/registry/registry';
import { loadMnistPackage } from '../../../src/ml/data/mnistPackage';
import { handleInfer } from '../../../src/handlers/infer';
import type { PredictionRecord } from '../../../src/storage/records/prediction';
import { sha256 } from '../../../src/storage/blobStore';
import { handleLabel, undoLabel, type Worklist } from '../../../src/handlers/review';
import type { LabelRecord } from '../../../src/storage/records/label';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { saveTestModel } from '../../helpers/models';
import { badInputs } from '../../helpers/images';
import { asJson } from '../../helpers/http';

const settings = { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' };

function config() {
  return loadConfig({
    AzureWebJobsStorage: testConnectionString(),
    TRIAGE_LOCAL_POLL_MS: '50',
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_MODEL_REFRESH_MS: '0',
  });
}

/** Held-out digits as 112 px black-on-white PNG scans, with their true labels. */
async function testDigits(n: number, offset = 0): Promise<{ name: string; data: Buffer; label: string }[]> {
  const { test } = loadMnistPackage();
  const out = [];
  for (let i = offset; i < offset + n; i++) {
    const raw = Buffer.alloc(784);
    for (let j = 0; j < 784; j++) raw[j] = 255 - Math.round((test.images[i * 784 + j] ?? 0) * 255);
    const data = await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(112, 112)
      .png()
      .toBuffer();
    out.push({ name: `scan ${i}/digit é.png`, data, label: test.classNames[test.labels[i] ?? 0] ?? '' });
  }
  return out;
}

async function prediction(store: BlobStore, name: string): Promise<PredictionRecord | undefined> {
  return (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(name)))?.value;
}

describe('scoring and review on the embedded runtime', () => {
  let store: BlobStore;
  let rt: EmbeddedRuntime;
  let api: (path: string, init?: RequestInit) => Promise<{ status: number; body: unknown }>;

  beforeAll(async () => {
    store = await freshStore();
    rt = await EmbeddedRuntime.start({ config: config(), settings, log: quietLog });
    api = async (p, init) => {
      const res = await fetch(`http://127.0.0.1:${rt.httpPort}/api/${p}`, asJson(init));
      return { status: res.status, body: (await res.json()) as unknown };
    };
  });
  afterAll(async () => {
    await rt.stop();
    rt.deps.models.dispose();
  });

  it('lets images wait for a first model, then the sweep scores them', async () => {
    const digits = await testDigits(3, 100);
    for (const d of digits) await store.put(CONTAINERS.uploads, d.name, d.data);
    await rt.waitForIdle();
    for (const d of digits) {
      expect(await store.head(CONTAINERS.preprocessed, paths.preprocessed(d.name))).toBeDefined();
      expect(await prediction(store, d.name)).toBeUndefined();
      expect(await store.head(CONTAINERS.rejected, paths.rejected(d.name))).toBeUndefined();
    }
    const pending = await api(`predictions/${encodeURIComponent(digits[0]?.name ?? '')}`);
    expect(pending).toMatchObject({ status: 404, body: { pending: true } });

    await saveTestModel(store, { version: 'v1', trainImages: 3000, epochs: 3 });
    await promote(store, 'v1', { by: 'test', reason: 'first model' });
    const sweep = rt.functions.find((f) => f.name === 'sweep');
    expect(sweep).toBeDefined();
    if (sweep !== undefined) await rt.fireTimer(sweep);
    for (const d of digits) expect((await prediction(store, d.name))?.model.version).toBe('v1');
  });

  it('scores uploads with the promoted model, flags the uncertain ones, and traces each to model and preprocessing', async () => {
    const digits = await testDigits(40);
    // The runtime hands infer the .npy bytes preprocess just wrote: nobody downloads them again.
    const npyReads: string[] = [];
    const onRequest = (msg: unknown) => {
      const req = (msg as { request: ClientRequest }).request;
      if (req.method === 'GET' && /\/preprocessed\/.*\.npy(\?|$)/.test(req.path)) npyReads.push(req.path);
    };
    diagnostics.subscribe('http.client.request.start', onRequest);
    try {
      for (const d of digits) await store.put(CONTAINERS.uploads, d.name, d.data);
      await rt.waitForIdle();
    } finally {
      diagnostics.unsubscribe('http.client.request.start', onRequest);
    }
    expect(npyReads).toEqual([]);
    let correct = 0;
    for (const d of digits) {
      const p = await prediction(store, d.name);
      expect(p).toBeDefined();
      if (p === undefined) continue;
      expect(p.upload).toBe(d.name);
      expect(p.model.version).toBe('v1');
      expect(p.preprocessing).toEqual({ profile: 'mnist', version: '1.0.0' });
      expect(Object.values(p.probabilities).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 3);
      expect(p.confidence).toBe(Math.max(...Object.values(p.probabilities)));
      expect(p.review.reasons.includes('low-confidence')).toBe(p.confidence < 0.9);
      expect(p.review.flagged).toBe(p.review.reasons.length > 0);
      const flag = await store.head(CONTAINERS.flagged, paths.flagged(d.name));
      expect(flag !== undefined).toBe(p.review.flagged);
      if (p.topClass === d.label) correct++;
    }
    // A briefly trained MLP on real scans: far above chance (10%).
    expect(correct / digits.length).toBeGreaterThan(0.7);
  });

  it('never lets a late score of older bytes replace the records of a newer upload of the same name', async () => {
    const [older, newer] = await testDigits(2, 200);
    if (older === undefined || newer === undefined) throw new Error('no digits');
    const name = 'late/score.png';
    await store.put(CONTAINERS.uploads, name, older.data);
    await rt.waitForIdle();
    const olderNpy = await store.get(CONTAINERS.preprocessed, paths.preprocessed(name));
    expect(olderNpy).toBeDefined();
    await store.put(CONTAINERS.uploads, name, newer.data);
    await rt.waitForIdle();
    expect((await prediction(store, name))?.source.sha256).toBe(sha256(newer.data));

    // The older .npy delivered late (another instance's event, a slow invocation): nothing changes.
    const late = await handleInfer(
      { name, data: olderNpy?.data ?? Buffer.alloc(0), metadata: olderNpy?.metadata },
      rt.deps,
      quietLog,
    );
    expect(late).toEqual({ status: 'superseded' });
    expect((await prediction(store, name))?.source.sha256).toBe(sha256(newer.data));
  });

  it('switches to a newly promoted model without a restart, and back on rollback', async () => {
    await saveTestModel(store, { version: 'v2', seed: 11, trainImages: 1000, epochs: 1, threshold: null });
    await promote(store, 'v2', { by: 'test', reason: 'newer' });
    const [a] = await testDigits(1, 300);
    if (a === undefined) throw new Error('no digit');
    await store.put(CONTAINERS.uploads, a.name, a.data);
    await rt.waitForIdle();
    const p2 = await prediction(store, a.name);
    expect(p2?.model.version).toBe('v2');
    // threshold null: the card has no selective threshold, so every prediction goes to review.
    expect(p2?.review.reasons).toContain('low-confidence');

    await rollback(store, { by: 'test', reason: 'v2 worse' });
    expect((await readCurrent(store))?.value.version).toBe('v1');
    const [b] = await testDigits(1, 301);
    if (b === undefined) throw new Error('no digit');
    await store.put(CONTAINERS.uploads, b.name, b.data);
    await rt.waitForIdle();
    expect((await prediction(store, b.name))?.model.version).toBe('v1');
    await expect(rollback(store, { by: 'test', reason: 'again' })).rejects.toThrow(/no earlier model/);
  });

  it('serves a worklist of unlabeled flagged images ordered by priority, and pages it', async () => {
    const all = (await api('worklist?pageSize=500')).body as Worklist;
    expect(all.total).toBeGreaterThan(1);
    const priorities = all.items.map((i) => i.priority);
    expect(priorities).toEqual([...priorities].sort((x, y) => y - x));
    // Each item carries what the reviewer decides on: the predicted class and its probability.
    for (const item of all.items.slice(0, 5)) {
      const p = await prediction(store, item.upload);
      expect(item).toMatchObject({
        topClass: p?.topClass,
        confidence: p?.confidence,
        modelVersion: p?.model.version,
        batch: item.upload.slice(0, item.upload.indexOf('/') + 1),
      });
      expect(item.top?.[0]).toEqual({ class: p?.topClass, probability: p?.confidence });
      // Not a screening model: the confidence threshold the flag applied, no positive class.
      expect(p?.threshold.kind).toBe('confidence');
      expect(item.confidenceThreshold).toBe(p?.threshold.value);
      expect(item.screening).toBeUndefined();
      expect(typeof item.uploadedAt).toBe('string');
    }
    const lowConf = (await api('worklist?pageSize=500&reason=low-confidence')).body as Worklist;
    expect(lowConf.total).toBe(all.items.filter((i) => i.reasons.includes('low-confidence')).length);
    expect(all.reasonCounts['low-confidence']).toBe(lowConf.total);
    const first = all.items[0]?.upload ?? '';
    const batch = first.slice(0, first.indexOf('/') + 1);
    const byPrefix = (await api(`worklist?pageSize=500&prefix=${encodeURIComponent(batch)}`)).body as Worklist;
    expect(byPrefix.items.map((i) => i.upload)).toEqual(
      all.items.filter((i) => i.upload.startsWith(batch)).map((i) => i.upload),
    );
    expect((await api('worklist?prefix=..%2Fx')).status).toBe(400);
    expect((await api('worklist?reason=%3Cb%3E')).status).toBe(400);
    const page2 = (await api('worklist?page=2&pageSize=1')).body as Worklist;
    expect(page2.items[0]?.upload).toBe(all.items[1]?.upload);
    expect((await api('worklist?pageSize=0')).status).toBe(400);

    const top = all.items[0];
    if (top === undefined) throw new Error('empty worklist');
    const labeled = await api(`labels/${encodeURIComponent(top.upload)}`, {
      method: 'POST',
      body: JSON.stringify({ class: '3' }),
      headers: { 'x-ms-client-principal-name': 'dr.who' },
    });
    expect(labeled.status).toBe(201);
    const after = (await api('worklist?pageSize=500')).body as Worklist;
    expect(after.total).toBe(all.total - 1);
    expect(after.items.map((i) => i.upload)).not.toContain(top.upload);
  });

  it('records labels with who and when, keeps the history on relabel, and answers every bad request with a clear 4xx', async () => {
    const [d] = await testDigits(1, 100);
    if (d === undefined) throw new Error('no digit');
    const url = `labels/${encodeURIComponent(d.name)}`;
    const post = (body: string) => api(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });

    const first = await post(JSON.stringify({ class: d.label, reviewer: 'alice' }));
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ upload: d.name, class: d.label, labeledBy: 'alice', history: [] });
    const second = await post(JSON.stringify({ class: '0', reviewer: 'bob', note: 'second opinion' }));
    expect(second.status).toBe(200);
    const rec = second.body as LabelRecord;
    expect(rec).toMatchObject({ class: '0', labeledBy: 'bob', note: 'second opinion' });
    expect(rec.history).toEqual([expect.objectContaining({ class: d.label, labeledBy: 'alice' })]);
    const stored = await store.getJson<LabelRecord>(CONTAINERS.labels, paths.label(d.name));
    expect(stored?.value.history).toHaveLength(1);

    const cases: [string, number, RegExp][] = [
      ['{"class": ', 400, /not valid JSON/],
      ['', 400, /no body/],
      ['[1,2]', 400, /JSON object/],
      ['{"label": "3"}', 400, /"class"/],
      ['{"class": 3}', 400, /"class"/],
      ['{"class": "cat"}', 422, /Unknown class "cat".*0, 1, 2/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await post(body);
      expect({ body, status: r.status }).toEqual({ body, status });
      expect((r.body as { error: string }).error).toMatch(msg);
    }
    const unknown = await api('labels/no/such/image.png', { method: 'POST', body: '{"class":"1"}' });
    expect(unknown.status).toBe(404);
    expect((unknown.body as { error: string }).error).toMatch(/no image named/);

    const [bad] = await badInputs();
    if (bad === undefined) throw new Error('no bad input');
    await store.put(CONTAINERS.uploads, bad.name, bad.data);
    await rt.waitForIdle();
    const rejected = await api(`labels/${encodeURIComponent(bad.name)}`, { method: 'POST', body: '{"class":"1"}' });
    expect(rejected.status).toBe(409);
    expect((rejected.body as { error: string }).error).toMatch(/rejected \(empty\)/);
    expect((await api(`labels/${encodeURIComponent(d.name)}`, { method: 'GET' })).status).toBe(405);
  });

  it('undoes only the latest label, only for its author: the one before comes back, or the image returns to the worklist', async () => {
    const [d] = await testDigits(1, 300);
    if (d === undefined) throw new Error('no digit');
    await store.put(CONTAINERS.uploads, d.name, d.data);
    await rt.waitForIdle();
    const first = await handleLabel({ name: d.name, body: { class: '1' }, by: 'carol' }, rt.deps);
    const second = await handleLabel(
      { name: d.name, body: { class: '2', note: 'look again', reviewer: 'mallory' }, by: 'dave', verified: true },
      rt.deps,
    );
    if (first.status >= 400 || second.status >= 400) throw new Error('labels not written');
    const at = (r: typeof second) => (r.body as LabelRecord).labeledAt;
    expect((second.body as LabelRecord).labeledBy).toBe('dave'); // a verified reviewer is never the body's

    expect((await undoLabel({ name: d.name, by: 'carol', labeledAt: at(second) }, rt.deps)).status).toBe(409);
    expect((await undoLabel({ name: d.name, by: 'dave', labeledAt: at(first) }, rt.deps)).status).toBe(409);
    const undone = await undoLabel({ name: d.name, by: 'dave', labeledAt: at(second) }, rt.deps);
    expect(undone.status).toBe(200);
    const restored = (await store.getJson<LabelRecord>(CONTAINERS.labels, paths.label(d.name)))?.value;
    expect(restored).toMatchObject({ class: '1', labeledBy: 'carol', labeledAt: at(first), history: [] });
    expect(restored?.note).toBeUndefined();

    expect((await undoLabel({ name: d.name, by: 'carol', labeledAt: at(first) }, rt.deps)).status).toBe(200);
    expect(await store.head(CONTAINERS.labels, paths.label(d.name))).toBeUndefined();
    expect((await undoLabel({ name: d.name, by: 'carol', labeledAt: at(first) }, rt.deps)).status).toBe(404);
  });

  it('serves prediction records by upload name', async () => {
    const [d] = await testDigits(1, 100);
    const ok = await api(`predictions/${encodeURIComponent(d?.name ?? '')}`);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ upload: d?.name, model: { version: 'v1' } });
    const missing = await api('predictions/nothing.png');
    expect(missing.status).toBe(404);
  });
});
