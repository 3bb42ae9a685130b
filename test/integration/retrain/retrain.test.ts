/**
 * Scheduled retraining end to end, on the embedded runtime against Azurite, with the local
 * launcher running the real trainer (`triage train-job --run <id>`) as a child process:
 *  - labels arrive through the review API, the timer starts a run, the candidate beats the
 *    promoted model on the held-out set and is promoted, and the next upload is scored by it;
 *  - a candidate trained on shuffled labels is not promoted (and says why);
 *  - two instances' timers firing at once start one run;
 *  - a failing trainer (or one that dies) is recorded in runs/ and leaves models/current.json alone.
 * Trainings are tiny (MLP, two epochs, a few hundred to 1,500 images).
 */
import sharp from 'sharp';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import type { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { listVersions, promote, readCurrent } from '../../../src/registry/registry';
import type { PredictionRecord } from '../../../src/storage/records/prediction';
import { listRuns, readStatus } from '../../../src/jobs/runs';
import { isHeldOut, readManifest } from '../../../src/jobs/manifest';
import { LocalLauncher } from '../../../src/jobs/launchers';
import { startRun } from '../../../src/jobs/start';
import type { RunReport } from '../../../src/jobs/trainer';
import { freshStore, quietLog } from '../../helpers/azurite';
import { saveTestModel } from '../../helpers/models';
import { NEVER, api, digits, retrainConfig, waitForRun, writeLabeled } from './helpers';

/** Held-out mnist digits as 112 px black-on-white PNG scans. */
async function scans(n: number, offset: number): Promise<{ name: string; data: Buffer; label: string }[]> {
  const { test } = digits();
  const out = [];
  for (let i = offset; i < offset + n; i++) {
    const raw = Buffer.alloc(784);
    for (let j = 0; j < 784; j++) raw[j] = 255 - Math.round((test.images[i * 784 + j] ?? 0) * 255);
    const data = await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(112, 112)
      .png()
      .toBuffer();
    out.push({ name: `ward 3/scan-${i}.png`, data, label: test.classNames[test.labels[i] ?? 0] ?? '' });
  }
  return out;
}

describe('scheduled retraining with a promotion gate', () => {
  let store: BlobStore;
  const runtimes: EmbeddedRuntime[] = [];
  const start = async (config: ReturnType<typeof retrainConfig>, schedule: string, instanceId?: string) => {
    const rt = await EmbeddedRuntime.start({
      config,
      settings: { RETRAIN_SCHEDULE: schedule, SWEEP_SCHEDULE: NEVER },
      log: quietLog,
      ...(instanceId ? { instanceId } : {}),
    });
    runtimes.push(rt);
    return rt;
  };

  beforeEach(async () => {
    store = await freshStore();
  });
  afterEach(async () => {
    for (const rt of runtimes.splice(0)) {
      await rt.stop();
      rt.deps.models.dispose();
    }
  });

  it('labels arrive, the timer starts a run, a better candidate is promoted and scores the next upload', async () => {
    await saveTestModel(store, { version: 'weak', trainImages: 60, epochs: 1, seed: 3 });
    await promote(store, 'weak', { by: 'test', reason: 'first model' });
    const rt = await start(
      retrainConfig({ RETRAIN_BASE_DATA: 'mnist:1500', RETRAIN_MIN_NEW_LABELS: '24' }),
      '*/1 * * * * *',
    );
    const call = api(rt);

    const batch = await scans(24, 1000);
    for (const s of batch) await store.put(CONTAINERS.uploads, s.name, s.data);
    await rt.waitForIdle();
    // Nothing to retrain on yet: the timer has been firing without starting a run.
    expect(await listRuns(store)).toEqual([]);
    for (const s of batch) {
      const r = await call(`labels/${encodeURIComponent(s.name)}`, {
        method: 'POST',
        body: JSON.stringify({ class: s.label, reviewer: 'dr.who' }),
      });
      expect(r.status).toBe(201);
    }

    const done = await waitForRun(store);
    expect(done).toMatchObject({
      state: 'succeeded',
      outcome: 'promoted',
      requestedBy: 'timer',
      launcher: { kind: 'local' },
    });
    expect(done.history.map((h) => h.state)).toEqual(['queued', 'running', 'succeeded']);
    const current = await readCurrent(store);
    expect(current?.value.version).toBe(done.candidateVersion);
    expect(current?.value.history[0]?.version).toBe('weak');

    // The manifest names every labeled image with its source hash and class, and the base data.
    const manifest = await readManifest(store, done.runId);
    expect(manifest?.labels.items).toHaveLength(batch.length);
    for (const s of batch) {
      const item = manifest?.labels.items.find((i) => i.name === s.name);
      expect(item).toMatchObject({ class: s.label, heldOut: isHeldOut(item?.sha256 ?? '0'.repeat(64)) });
      expect(item?.sha256).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(manifest?.baseData).toMatchObject({ name: 'mnist', limit: 1500 });
    expect(manifest?.baseModel?.version).toBe('weak');

    const report = (await store.getJson<RunReport>(CONTAINERS.runs, paths.runReport(done.runId)))?.value;
    expect(report?.gate.promote).toBe(true);
    expect(report?.candidate.heldOut.accuracy).toBeGreaterThan(report?.promoted?.accuracy ?? 1);
    expect(report?.data.heldOut.total).toBe(375 + (manifest?.heldOut.labeled ?? 0));
    expect(report?.data.labeled.train).toBe(batch.length - (manifest?.heldOut.labeled ?? 0));
    expect(report?.timings.trainMs).toBeGreaterThan(0);
    for (const plot of ['confusion.svg', 'risk-coverage.svg', 'reliability.svg']) {
      expect((await store.get(CONTAINERS.runs, paths.runFile(done.runId, plot)))?.data.toString('utf8')).toMatch(
        /<svg/,
      );
    }
    expect((await call(`runs/${done.runId}`)).body).toMatchObject({ state: 'succeeded', outcome: 'promoted' });

    // The next upload is scored by the promoted candidate, without a restart.
    const [next] = await scans(1, 1100);
    if (next === undefined) throw new Error('no scan');
    await store.put(CONTAINERS.uploads, next.name, next.data);
    await rt.waitForIdle();
    const p = (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(next.name)))?.value;
    expect(p?.model.version).toBe(done.candidateVersion);
    // No new labels since the promoted model's snapshot: the timer keeps firing without a new run.
    expect(await listRuns(store)).toHaveLength(1);
  });

  it('does not promote a candidate trained on shuffled labels, and records why', async () => {
    await saveTestModel(store, { version: 'good', trainImages: 1500, epochs: 2, seed: 5 });
    await promote(store, 'good', { by: 'test', reason: 'first model' });
    const before = await readCurrent(store);
    // Reviewers mislabeled every training image (a class shifted by one to nine); held-out labels are true.
    const labeled = await writeLabeled(store, {
      prefix: 'shuffled',
      from: 200,
      count: 150,
      classOf: (l, i) => (isHeldOut(l.sha256) ? l.trueClass : String((Number(l.trueClass) + 1 + (i % 9)) % 10)),
    });
    expect(labeled.filter((l) => isHeldOut(l.sha256)).length).toBeGreaterThanOrEqual(5);
    const rt = await start(retrainConfig(), NEVER);

    const r = await api(rt)('retrain', { method: 'POST', body: '' });
    expect(r.status).toBe(202);
    const runId = String(r.body.runId);
    const done = await waitForRun(store, runId);
    expect(done).toMatchObject({ state: 'succeeded', outcome: 'not-promoted', requestedBy: 'http:anonymous' });
    expect(done.reason).toMatch(/worse than good: held-out accuracy/);
    const after = await readCurrent(store);
    expect(after?.etag).toBe(before?.etag);
    // The candidate is kept (not promoted) for inspection.
    expect((await listVersions(store)).map((v) => v.version)).toContain(done.candidateVersion);
    const report = (await store.getJson<RunReport>(CONTAINERS.runs, paths.runReport(runId)))?.value;
    expect(report?.gate).toMatchObject({ promote: false, accuracy: { ok: false } });
    expect(report?.promotion.promoted).toBe(false);
    expect(report?.data.base).toBe('none');

    // The HTTP API validates its body and enforces one run at a time / the label minimum.
    const call = api(rt);
    expect((await call('retrain', { method: 'POST', body: '{"force": "yes"}' })).status).toBe(400);
    expect((await call('retrain', { method: 'POST', body: '[1]' })).status).toBe(400);
    const tooFew = await call('retrain', { method: 'POST', body: '{}' });
    expect(tooFew.status).toBe(422);
    expect(String(tooFew.body.error)).toMatch(
      new RegExp(`0 new labels since run ${runId} \\(not promoted\\); RETRAIN_MIN_NEW_LABELS is 20.*force`),
    );
  });

  it("starts one run when two instances' timers fire at once", async () => {
    await writeLabeled(store, { prefix: 'both', from: 400, count: 40 });
    const config = retrainConfig();
    const a = await start(config, NEVER, 'A');
    const b = await start(config, NEVER, 'B');
    const fa = a.functions.find((f) => f.name === 'retrain');
    const fb = b.functions.find((f) => f.name === 'retrain');
    if (fa === undefined || fb === undefined) throw new Error('no retrain timer registered');
    await Promise.all([a.fireTimer(fa), b.fireTimer(fb)]);
    const runs = await listRuns(store);
    expect(runs).toHaveLength(1);
    const active = await store.getJson<{ runId: string }>(CONTAINERS.runs, paths.runActive());
    expect(active?.value.runId).toBe(runs[0]?.runId);
    // A third firing while it runs starts nothing either.
    await a.fireTimer(fa);
    const finished = await waitForRun(store, runs[0]?.runId);
    expect(finished.state).toBe('succeeded');
    expect(await listRuns(store)).toHaveLength(1);
  });

  it('holds the start lease exclusively until it is released', async () => {
    const first = await store.acquireLease(CONTAINERS.runs, paths.runLock(), 15);
    expect(first).toBeDefined();
    expect(await store.acquireLease(CONTAINERS.runs, paths.runLock(), 15)).toBeUndefined();
    const rt = await start(retrainConfig(), NEVER);
    await writeLabeled(store, { prefix: 'held', from: 800, count: 20 });
    // A starter that finds the lease taken gives up at once: "busy", no run.
    const r = await api(rt)('retrain', { method: 'POST', body: '{"force": true}' });
    expect(r).toMatchObject({
      status: 409,
      body: { error: expect.stringMatching(/another instance is starting a run/) },
    });
    expect(await store.renewLease(CONTAINERS.runs, paths.runLock(), first ?? '')).toBe(true);
    await store.releaseLease(CONTAINERS.runs, paths.runLock(), first ?? '');
    const second = await store.acquireLease(CONTAINERS.runs, paths.runLock(), 15);
    expect(second).toBeDefined();
    await store.releaseLease(CONTAINERS.runs, paths.runLock(), second ?? '');
    expect(await listRuns(store)).toEqual([]);
  });

  it('records a failing trainer in runs/ and leaves the promoted model untouched', async () => {
    await saveTestModel(store, { version: 'v1', trainImages: 0 });
    await promote(store, 'v1', { by: 'test', reason: 'first model' });
    const before = await readCurrent(store);
    const labeled = await writeLabeled(store, { prefix: 'gone', from: 600, count: 25 });
    // The pixels vanish before the trainer reads them: with no base data there is nothing to train on.
    for (const l of labeled) await store.container(CONTAINERS.preprocessed).deleteBlob(paths.preprocessed(l.name));
    const rt = await start(retrainConfig(), NEVER);

    const r = await api(rt)('retrain', { method: 'POST', body: '{"force": true}' });
    expect(r.status).toBe(202);
    const done = await waitForRun(store, String(r.body.runId));
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/nothing to train on: none of the 25 labeled images could be loaded/);
    expect(done.history.map((h) => h.state)).toEqual(['queued', 'running', 'failed']);
    expect((await readCurrent(store))?.etag).toBe(before?.etag);
    expect((await listVersions(store)).map((v) => v.version)).toEqual(['v1']);
    expect((await store.get(CONTAINERS.runs, paths.runFile(done.runId, 'trainer.log')))?.data.toString('utf8')).toMatch(
      /nothing to train on/,
    );

    // A trainer that dies without a word is recorded as failed too (and the next run may start).
    await writeLabeled(store, { prefix: 'later', from: 700, count: 25 });
    const crashing = new LocalLauncher(rt.deps.config, store, {
      command: () => ({ command: process.execPath, args: ['-e', 'process.exit(3)'] }),
    });
    const started = await startRun(rt.deps, { requestedBy: 'test', launcher: crashing, force: true });
    if (!started.started) throw new Error(`no run: ${started.message}`);
    await started.launch.done;
    const crashed = (await readStatus(store, started.runId))?.value;
    expect(crashed).toMatchObject({ state: 'failed' });
    expect(crashed?.error).toMatch(/exited \(code 3\) without finishing the run/);
    expect((await readCurrent(store))?.etag).toBe(before?.etag);
  });
});
