/**
 * Retraining a screening model on X-ray uploads, end to end on the embedded runtime against
 * Azurite with the real trainer as a child process: an xray-profile instance (32 px) whose base
 * data is a folder of small synthetic radiographs (NORMAL / PNEUMONIA, file names with patient
 * keys), and reviewers' labels on uploads.
 *  - the first run trains a `screen` model, judges it with the screening gate and promotes it over a
 *    digits model the instance cannot use (no baseline);
 *  - after labels on uploads, the second run compares AUROC and sensitivity at each model's
 *    threshold on the same held-out images, and decides by them.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import type { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { findCard, promote, readCurrent } from '../../../src/registry/registry';
import { readManifest } from '../../../src/jobs/manifest';
import { describeSummary } from '../../../src/cli/commands/retrain';
import type { RunReport } from '../../../src/jobs/trainer';
import type { ScreeningGateDecision } from '../../../src/jobs/gate';
import { freshStore, quietLog } from '../../helpers/azurite';
import { saveTestModel } from '../../helpers/models';
import { radiographPng } from '../../helpers/images';
import { NEVER, api, retrainConfig, waitForRun } from './helpers';

const SIZE = 32;
const RUN_TIMEOUT = 20 * 60_000;

/** NORMAL images as IM-<patient>-<n>.png, PNEUMONIA as person<patient>_bacteria_<n>.png: two images per patient. */
async function writeBaseFolder(dir: string, patients: number): Promise<void> {
  for (const cls of ['NORMAL', 'PNEUMONIA']) await mkdir(join(dir, cls), { recursive: true });
  for (let p = 0; p < patients; p++) {
    for (let n = 1; n <= 2; n++) {
      await writeFile(
        join(dir, 'NORMAL', `IM-${String(p).padStart(4, '0')}-000${n}.png`),
        await radiographPng(64, { opacity: false, seed: 1000 + p * 10 + n }),
      );
      await writeFile(
        join(dir, 'PNEUMONIA', `person${p}_bacteria_${n}.png`),
        await radiographPng(64, { opacity: true, seed: 5000 + p * 10 + n }),
      );
    }
  }
}

describe('retraining a screening model on X-ray labels', () => {
  let store: BlobStore;
  let dir: string;
  let rt: EmbeddedRuntime | undefined;

  beforeEach(async () => {
    store = await freshStore();
    dir = await mkdtemp(join(tmpdir(), 'xray-base-'));
  });
  afterEach(async () => {
    if (rt !== undefined) {
      await rt.stop();
      rt.deps.models.dispose();
      rt = undefined;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'trains a screen model, promotes it by the screening gate, and judges the next candidate by AUROC and sensitivity',
    async () => {
      await writeBaseFolder(join(dir, 'base'), 20);
      // A digits model is promoted: this xray instance cannot use it.
      await saveTestModel(store, { version: 'digits', trainImages: 0 });
      await promote(store, 'digits', { by: 'test', reason: 'before the switch to radiographs' });
      const config = retrainConfig({
        TRIAGE_PROFILE: 'xray',
        TRIAGE_XRAY_SIZE: String(SIZE),
        RETRAIN_MODEL: '',
        RETRAIN_BASE_DATA: `folder:${join(dir, 'base')}`,
        RETRAIN_POSITIVE_CLASS: 'PNEUMONIA',
        RETRAIN_EPOCHS: '10',
        RETRAIN_MIN_NEW_LABELS: '1',
      });
      expect(config.retrainModel).toBe('screen');
      rt = await EmbeddedRuntime.start({
        config,
        settings: { RETRAIN_SCHEDULE: NEVER, SWEEP_SCHEDULE: NEVER },
        log: quietLog,
      });
      const call = api(rt);

      // ---- run 1: the base folder alone ----
      const r1 = await call('retrain', { method: 'POST', body: '{"force": true}' });
      expect(r1.status).toBe(202);
      const run1 = await waitForRun(store, String(r1.body.runId), RUN_TIMEOUT);
      expect(run1).toMatchObject({
        state: 'succeeded',
        outcome: 'promoted',
        summary: { gate: 'screening', positiveClass: 'PNEUMONIA' },
      });
      expect(run1.reason).toMatch(
        /^the promoted model cannot score this instance's images \(model digits was trained on images preprocessed with the mnist profile.*\), so it is no baseline: no model is promoted yet; screening gate \(PNEUMONIA positive\): candidate held-out AUROC/,
      );
      const m1 = await readManifest(store, run1.runId);
      expect(m1).toMatchObject({
        profile: 'xray',
        xraySize: SIZE,
        classNames: ['NORMAL', 'PNEUMONIA'],
        baseData: { name: 'folder' },
        training: { architecture: 'screen', positiveClass: 'PNEUMONIA', classWeights: 'balanced', batchSize: 32 },
      });
      const card1 = await findCard(store, run1.candidateVersion ?? '');
      expect(card1).toMatchObject({
        architecture: 'screen',
        inputShape: [SIZE, SIZE, 1],
        preprocessing: { profile: 'xray' },
        thresholds: { screening: { positiveClass: 'PNEUMONIA', targetSensitivity: 0.99 } },
      });
      // Validation (where the threshold is chosen) was split by patient: two images per patient, 40 patients in the folder.
      const grouping = card1?.data.grouping;
      expect(grouping?.unmatched).toBe(0);
      expect(grouping?.groups).toBeLessThan(40);
      expect(grouping?.validationGroups).toBeGreaterThan(0);
      expect((card1?.data.trainImages ?? 0) + (card1?.data.validationImages ?? 0)).toBe(2 * (grouping?.groups ?? 0));
      const report1 = (await store.getJson<RunReport>(CONTAINERS.runs, paths.runReport(run1.runId)))?.value;
      expect(report1?.gate.kind).toBe('screening');
      expect(report1?.promoted).toBeNull();
      expect(report1?.data.heldOut.base).toBeGreaterThan(0);
      expect((await store.get(CONTAINERS.runs, paths.runFile(run1.runId, 'roc.svg')))?.data.toString('utf8')).toMatch(
        /<svg/,
      );

      // ---- labels on uploads, scored by the promoted screen model ----
      const uploads: { name: string; cls: string }[] = [];
      for (let k = 0; k < 8; k++) {
        const opacity = k % 2 === 1;
        const name = `ward 2/${opacity ? `person${100 + k}_virus_1` : `IM-${9000 + k}-0001`}.png`;
        await store.put(CONTAINERS.uploads, name, await radiographPng(64, { opacity, seed: 90_000 + k }));
        uploads.push({ name, cls: opacity ? 'PNEUMONIA' : 'NORMAL' });
      }
      await rt.waitForIdle();
      for (const u of uploads) {
        expect(
          (await store.getJson<{ model: { version: string } }>(CONTAINERS.predictions, paths.prediction(u.name)))?.value
            .model.version,
        ).toBe(run1.candidateVersion);
        expect(
          (
            await call(`labels/${encodeURIComponent(u.name)}`, {
              method: 'POST',
              body: JSON.stringify({ class: u.cls, reviewer: 'dr.x' }),
            })
          ).status,
        ).toBe(201);
      }

      // ---- run 2: labels + base folder, judged against the promoted screen model ----
      const before = await readCurrent(store);
      const r2 = await call('retrain', { method: 'POST', body: '{}' });
      expect(r2.status).toBe(202);
      const run2 = await waitForRun(store, String(r2.body.runId), RUN_TIMEOUT);
      expect(run2.state).toBe('succeeded');
      const m2 = await readManifest(store, run2.runId);
      expect(m2?.labels.items.map((i) => i.name).sort()).toEqual(uploads.map((u) => u.name).sort());
      expect(m2?.baseModel?.version).toBe(run1.candidateVersion);
      const report2 = (await store.getJson<RunReport>(CONTAINERS.runs, paths.runReport(run2.runId)))?.value;
      const gate = report2?.gate as ScreeningGateDecision;
      expect(gate.kind).toBe('screening');
      // Both models were scored on the same held-out images, each at its own card threshold.
      expect(report2?.promoted?.version).toBe(run1.candidateVersion);
      expect(report2?.promoted?.screening?.n).toBe(report2?.candidate.screening?.n);
      expect(gate.threshold.promoted).toBe(card1?.thresholds.screening?.threshold);
      const card2 = await findCard(store, run2.candidateVersion ?? '');
      expect(gate.threshold.candidate).toBe(card2?.thresholds.screening?.threshold);
      for (const v of [
        gate.auroc.candidate,
        gate.auroc.promoted,
        gate.sensitivity.candidate,
        gate.sensitivity.promoted,
        gate.specificity.candidate,
        gate.specificity.promoted,
      ]) {
        expect(v).toEqual(expect.any(Number));
      }
      // The decision is the screening rule on those figures.
      const margin = m2?.gate.margin ?? NaN;
      const pass =
        (gate.auroc.candidate ?? 0) >= (gate.auroc.promoted ?? 1) - margin - 1e-12 &&
        (gate.sensitivity.candidate ?? 0) >= (gate.sensitivity.promoted ?? 1) - margin - 1e-12;
      expect(gate.promote).toBe(pass);
      expect(run2.outcome).toBe(pass ? 'promoted' : 'not-promoted');
      expect(run2.reason).toMatch(
        new RegExp(
          `^(no worse|worse) than ${run1.candidateVersion}: .*screening gate \\(PNEUMONIA positive, margin 0, ${gate.heldOut.n} held-out images: ${gate.heldOut.positives} PNEUMONIA\\)`,
        ),
      );
      expect((await readCurrent(store))?.value.version).toBe(pass ? run2.candidateVersion : before?.value.version);
      // What `triage runs show` prints of it.
      const lines = describeSummary(run2.summary ?? {});
      expect(lines[0]).toMatch(/^gate: screening \(PNEUMONIA positive\)/);
      expect(lines[1]).toMatch(/AUROC \d\.\d{4} vs promoted \d\.\d{4}; sensitivity [\d.]+% vs [\d.]+% at thresholds /);
    },
    2 * RUN_TIMEOUT + 120_000,
  );
});
