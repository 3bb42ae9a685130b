import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config';
import {
  baseDataClasses,
  buildManifest,
  candidateClasses,
  isHeldOut,
  newLabels,
  positiveClassOf,
  Snapshot,
  ManifestItem,
  trainingPlan,
} from '../../../src/jobs/manifest';
import type { ModelCard } from '../../../src/ml/modelStore';
import { XRAY_DEFAULTS } from '../../../src/ml/defaults';
import { trainJobRunId } from '../../../src/cli/commands/retrain';
import { checkRunId, newRunId } from '../../../src/jobs/runs';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const base = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

describe('held-out split', () => {
  it('holds out images whose source sha256 is 0 mod 10: about a tenth, always the same ones', () => {
    const hashes = Array.from({ length: 5000 }, (_, i) => sha(`image ${i}`));
    const held = hashes.filter((h) => isHeldOut(h));
    expect(held.length / hashes.length).toBeGreaterThan(0.08);
    expect(held.length / hashes.length).toBeLessThan(0.12);
    for (const h of hashes.slice(0, 200)) expect(isHeldOut(h)).toBe(BigInt(`0x${h}`) % 10n === 0n);
    expect(isHeldOut('0'.repeat(64))).toBe(true);
    expect(isHeldOut('0'.repeat(63) + '1')).toBe(false);
    expect(isHeldOut('0'.repeat(63) + 'A')).toBe(true); // 10, upper case accepted
    expect(() => isHeldOut('xyz')).toThrow(/not a SHA-256/);
  });
});

describe('new labels since the promoted model', () => {
  const labels = [
    { name: 'a', etag: '"1"', lastModified: new Date('2025-01-01T00:00:00Z') },
    { name: 'b', etag: '"2"', lastModified: new Date('2025-01-02T00:00:00Z') },
    { name: 'c', etag: '"3"', lastModified: new Date('2025-01-03T00:00:00Z') },
  ];
  const item = (name: string, labelEtag: string): ManifestItem => ({
    name,
    labelEtag,
    class: '1',
    sha256: sha(name),
    labeledAt: '',
    heldOut: false,
  });

  it('counts every label when nothing is promoted', () => {
    expect(newLabels(labels, { current: undefined, items: new Map(), since: undefined })).toHaveLength(3);
  });

  it('counts labels missing from, or changed since, the run manifest of the promoted model', () => {
    const snap: Snapshot = {
      current: { version: 'v', etag: '"e"', card: undefined },
      items: new Map([
        ['a', item('a', '"1"')],
        ['b', item('b', '"old"')],
      ]),
      since: undefined,
    };
    expect(newLabels(labels, snap).map((l) => l.name)).toEqual(['b', 'c']);
  });

  it('counts labels written after a hand-trained model was created', () => {
    const snap: Snapshot = {
      current: { version: 'v', etag: '"e"', card: undefined },
      items: new Map(),
      since: new Date('2025-01-01T12:00:00Z'),
    };
    expect(newLabels(labels, snap).map((l) => l.name)).toEqual(['b', 'c']);
  });

  it('counts a label written in the same second as the model (Last-Modified has whole seconds)', () => {
    const snap: Snapshot = {
      current: { version: 'v', etag: '"e"', card: undefined },
      items: new Map(),
      since: new Date('2025-01-02T00:00:00.750Z'),
    };
    expect(newLabels(labels, snap).map((l) => l.name)).toEqual(['b', 'c']);
  });
});

describe('retraining settings', () => {
  it('has documented defaults', () => {
    const c = loadConfig(base);
    expect(c.retrainBaseData).toEqual({ name: 'mnist' });
    expect(c.retrainPromotionMargin).toBe(0);
    expect(c.retrainModel).toBe('cnn');
    expect(c.retrainEpochs).toBe(30);
    expect(c.trainerJob).toBeUndefined();
    expect(trainingPlan(c)).toMatchObject({ architecture: 'cnn', epochs: 30, augment: { shift: 2, flip: false } });
    expect(trainingPlan(c)).toMatchObject({ batchSize: 64, classWeights: 'none' });
  });

  it('trains a screening model with the radiograph defaults in the xray profile', () => {
    const c = loadConfig({ ...base, TRIAGE_PROFILE: 'xray', TRIAGE_XRAY_SIZE: '128' });
    expect(c.retrainModel).toBe('screen');
    expect(c.retrainBaseData).toEqual({ name: 'none' });
    expect(trainingPlan(c)).toMatchObject({
      architecture: 'screen',
      batchSize: XRAY_DEFAULTS.batchSize,
      learningRateDecay: XRAY_DEFAULTS.learningRateDecay,
      patience: XRAY_DEFAULTS.patience,
      classWeights: 'balanced',
      targetSensitivity: 0.99,
      augment: { ...XRAY_DEFAULTS.augment, flip: false },
    });
    expect(trainingPlan(c).augment.brightness).toBeGreaterThan(0);
    expect(trainingPlan(c).augment.contrast).toBeGreaterThan(0);
    // The shift is in pixels at 128 px: a quarter of it at 32 px.
    expect(trainingPlan(loadConfig({ ...base, TRIAGE_PROFILE: 'xray', TRIAGE_XRAY_SIZE: '32' })).augment.shift).toBe(2);
    // An explicit model wins.
    expect(loadConfig({ ...base, TRIAGE_PROFILE: 'xray', RETRAIN_MODEL: 'cnn' }).retrainModel).toBe('cnn');
  });

  it('refuses mnist base data in the xray profile, naming the setting', () => {
    expect(() => loadConfig({ ...base, TRIAGE_PROFILE: 'xray', RETRAIN_BASE_DATA: 'mnist' })).toThrow(
      /Setting RETRAIN_BASE_DATA has the value "mnist"; expected folder:PATH or none with TRIAGE_PROFILE=xray/,
    );
    expect(() => loadConfig({ ...base, TRIAGE_PROFILE: 'xray', RETRAIN_BASE_DATA: 'mnist:100' })).toThrow(
      /RETRAIN_BASE_DATA.*TRIAGE_PROFILE=xray/,
    );
  });

  it('reads folder base data as an absolute path to a folder with class subfolders', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'base-'));
    try {
      mkdirSync(join(dir, 'NORMAL'));
      expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: `folder:${dir}` })).toThrow(
        /RETRAIN_BASE_DATA has the value "folder:.*"; expected folder:PATH naming a folder with one subfolder per class \(at least two\); .* has 1/,
      );
      mkdirSync(join(dir, 'PNEUMONIA'));
      writeFileSync(join(dir, 'README.txt'), 'not a class');
      const c = loadConfig({ ...base, TRIAGE_PROFILE: 'xray', RETRAIN_BASE_DATA: `folder:${dir}` });
      expect(c.retrainBaseData).toEqual({ name: 'folder', path: dir });
      expect((await baseDataClasses(c.retrainBaseData)).sort()).toEqual(['NORMAL', 'PNEUMONIA']);
      expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: `folder:${join(dir, 'missing')}` })).toThrow(
        /RETRAIN_BASE_DATA .*expected folder:PATH naming a readable folder; .*missing cannot be read/,
      );
      expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: `folder:${join(dir, 'README.txt')}` })).toThrow(
        /RETRAIN_BASE_DATA .*README.txt is not a folder/,
      );
      expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: 'folder:' })).toThrow(
        /RETRAIN_BASE_DATA .*a folder path after the colon/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads base data none, mnist and mnist:N, and rejects anything else naming the setting', () => {
    expect(loadConfig({ ...base, RETRAIN_BASE_DATA: 'none' }).retrainBaseData).toEqual({ name: 'none' });
    expect(loadConfig({ ...base, RETRAIN_BASE_DATA: 'mnist:500' }).retrainBaseData).toEqual({
      name: 'mnist',
      limit: 500,
    });
    expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: 'fashion' })).toThrow(
      /RETRAIN_BASE_DATA has the value "fashion"; expected mnist, mnist:N/,
    );
    expect(() => loadConfig({ ...base, RETRAIN_BASE_DATA: 'mnist:0' })).toThrow(/RETRAIN_BASE_DATA/);
  });

  it('reads the promotion margin as a fraction', () => {
    expect(loadConfig({ ...base, RETRAIN_PROMOTION_MARGIN: '0.01' }).retrainPromotionMargin).toBe(0.01);
    expect(() => loadConfig({ ...base, RETRAIN_PROMOTION_MARGIN: '5%' })).toThrow(
      /RETRAIN_PROMOTION_MARGIN has the value "5%"; expected a number from 0 to 1/,
    );
    expect(() => loadConfig({ ...base, RETRAIN_PROMOTION_MARGIN: '2' })).toThrow(/RETRAIN_PROMOTION_MARGIN/);
    expect(() => loadConfig({ ...base, RETRAIN_MODEL: 'resnet' })).toThrow(
      /RETRAIN_MODEL.*one of cnn, mlp, peer, screen/,
    );
  });
});

describe('class list of a candidate', () => {
  it("joins the base data's, the labels' and the promoted model's classes, digits in numeric order", () => {
    const items = [{ class: '10' }, { class: '3' }] as ManifestItem[];
    expect(candidateClasses({ name: 'none' }, items, undefined)).toEqual(['3', '10']);
    expect(candidateClasses({ name: 'mnist' }, items, undefined)).toEqual([
      '0',
      '1',
      '2',
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
      '10',
    ]);
  });
});

describe('positive class of a screening candidate', () => {
  const card = (positiveClass?: string) =>
    ({
      thresholds: positiveClass
        ? { screening: { positiveClass, targetSensitivity: 0.99, threshold: 0.2, validationSpared: 0.5 } }
        : {},
    }) as ModelCard;
  it("is the promoted model's, else RETRAIN_POSITIVE_CLASS, else a class named abnormal", () => {
    expect(positiveClassOf(['NORMAL', 'PNEUMONIA'], card('PNEUMONIA'), 'NORMAL')).toBe('PNEUMONIA');
    expect(positiveClassOf(['NORMAL', 'PNEUMONIA'], card(), 'PNEUMONIA')).toBe('PNEUMONIA');
    expect(positiveClassOf(['Abnormal', 'normal'], undefined, undefined)).toBe('Abnormal');
    expect(positiveClassOf(['0', '1', '2'], undefined, undefined)).toBeUndefined();
    expect(() => positiveClassOf(['NORMAL', 'PNEUMONIA'], undefined, 'TB')).toThrow(
      /RETRAIN_POSITIVE_CLASS is "TB", which is not one of the run's classes \(NORMAL, PNEUMONIA\)/,
    );
  });

  it("goes into the plan of an xray run, with the instance's size", () => {
    const config = loadConfig({
      ...base,
      TRIAGE_PROFILE: 'xray',
      TRIAGE_XRAY_SIZE: '64',
      RETRAIN_POSITIVE_CLASS: 'PNEUMONIA',
    });
    const items = [{ class: 'NORMAL' }, { class: 'PNEUMONIA' }] as ManifestItem[];
    const snapshot: Snapshot = { current: undefined, items: new Map(), since: undefined };
    const m = buildManifest({
      runId: 'r',
      createdAt: new Date(0),
      requestedBy: 't',
      force: false,
      config,
      snapshot,
      items,
      skipped: [],
      newSinceBaseModel: 2,
    });
    expect(m).toMatchObject({
      classNames: ['NORMAL', 'PNEUMONIA'],
      profile: 'xray',
      xraySize: 64,
      training: { architecture: 'screen', positiveClass: 'PNEUMONIA' },
    });
    const digits = buildManifest({
      runId: 'r',
      createdAt: new Date(0),
      requestedBy: 't',
      force: false,
      config: loadConfig(base),
      snapshot,
      items: [{ class: '1' }] as ManifestItem[],
      skipped: [],
      newSinceBaseModel: 1,
    });
    expect(digits.training.positiveClass).toBeUndefined();
    expect(digits.xraySize).toBeUndefined();
    // A promoted digits model cannot score radiographs: it adds no classes to an xray candidate.
    const digitsCard = {
      version: 'd',
      classNames: ['0', '1'],
      preprocessing: { profile: 'mnist', version: '1' },
      inputShape: [28, 28, 1],
      thresholds: {},
    } as unknown as ModelCard;
    const switched: Snapshot = {
      current: { version: 'd', etag: '"e"', card: digitsCard },
      items: new Map(),
      since: new Date(0),
    };
    expect(
      buildManifest({
        runId: 'r',
        createdAt: new Date(0),
        requestedBy: 't',
        force: false,
        config,
        snapshot: switched,
        items,
        skipped: [],
        newSinceBaseModel: 2,
      }).classNames,
    ).toEqual(['NORMAL', 'PNEUMONIA']);
  });
});

describe('run ids', () => {
  it('come from --run, else RUN_ID; empty means "plan one here"', () => {
    expect(trainJobRunId('r1', { RUN_ID: 'r2' })).toBe('r1');
    expect(trainJobRunId(undefined, { RUN_ID: 'r2' })).toBe('r2');
    expect(trainJobRunId(undefined, { RUN_ID: '' })).toBeUndefined();
    expect(trainJobRunId(undefined, {})).toBeUndefined();
    expect(() => trainJobRunId('../etc', {})).toThrow(/invalid run id/);
  });

  it('sort by creation time and are valid blob folder names', () => {
    const a = newRunId(new Date('2025-01-01T02:00:00Z'));
    const b = newRunId(new Date('2025-01-02T02:00:00Z'));
    expect(a < b).toBe(true);
    expect(a).toMatch(/^20250101T020000Z-[0-9a-f]{6}$/);
    expect(checkRunId(a)).toBe(a);
    expect(() => checkRunId('active.json')).toThrow();
  });
});
