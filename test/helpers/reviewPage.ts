/**
 * What the review page's browser test and bench/review.ts share: a small two-class X-ray model
 * (NORMAL/PNEUMONIA, untrained, built in well under a second) and the system Chromium.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { initBackend } from '../../src/ml/backend';
import { buildModel } from '../../src/ml/models';
import { ModelCard, saveModel } from '../../src/ml/modelStore';
import { PROFILE_VERSIONS } from '../../src/imaging/profiles';
import type { BlobStore } from '../../src/storage/blobStore';

export const SCREENING_CLASSES = ['NORMAL', 'PNEUMONIA'];

/** Debian's chromium; TRIAGE_CHROMIUM names another executable. */
export const CHROMIUM = process.env.TRIAGE_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Saves an untrained MLP for the xray profile at `size` px with a screening card: every image is
 * flagged (no selective threshold), and those with p(PNEUMONIA) >= `abnormalAt` as abnormal.
 */
export async function saveScreeningModel(store: BlobStore, o: { version: string; size: number; seed?: number; abnormalAt?: number }): Promise<ModelCard> {
  const backend = await initBackend();
  const model = buildModel('mlp', { seed: o.seed ?? 3, inputShape: [o.size, o.size, 1], classNames: SCREENING_CLASSES });
  const card: ModelCard = {
    version: o.version,
    createdAt: new Date().toISOString(),
    architecture: 'mlp',
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion },
    data: { source: 'untrained', manifestHash: 'test', trainImages: 0, validationImages: 0 },
    preprocessing: { profile: 'xray', version: PROFILE_VERSIONS.xray },
    classNames: SCREENING_CLASSES,
    inputShape: [o.size, o.size, 1],
    metrics: { accuracy: 0.5, selectiveRisk: null },
    temperature: 1,
    thresholds: {
      selective: { targetError: 0.01, threshold: null, validationCoverage: 0 },
      screening: { positiveClass: 'PNEUMONIA', targetSensitivity: 0.99, threshold: o.abnormalAt ?? 0.5, validationSpared: 0 },
    },
  };
  await saveModel(store, model, card);
  model.dispose();
  return card;
}

/** The radiographs in test/fixtures/review (CC BY 4.0, see its README). */
export function fixtureRadiographs(): { name: string; data: Buffer }[] {
  const root = fixturesDir();
  return readdirSync(root)
    .filter((f) => f.endsWith('.jpeg'))
    .sort()
    .map((f) => ({ name: f, data: readFileSync(path.join(root, f)) }));
}

function fixturesDir(): string {
  // test/helpers -> test/fixtures/review, from the sources (ts-jest) and from dist/test/helpers.
  const here = __dirname;
  const fromSource = path.resolve(here, '..', 'fixtures', 'review');
  const fromDist = path.resolve(here, '..', '..', '..', 'test', 'fixtures', 'review');
  try {
    readdirSync(fromSource);
    return fromSource;
  } catch {
    return fromDist;
  }
}

export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium (or set TRIAGE_CHROMIUM to another executable).`);
  }
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--force-color-profile=srgb', '--window-size=1440,900'],
    defaultViewport: { width: 1440, height: 900 },
  });
}
