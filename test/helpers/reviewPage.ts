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
 * Saves an untrained MLP for the xray profile at `size` px with a screening card: images with
 * p(PNEUMONIA) >= `abnormalAt` are flagged as abnormal (default 0: every image, most probable first).
 */
export async function saveScreeningModel(
  store: BlobStore,
  o: { version: string; size: number; seed?: number; abnormalAt?: number },
): Promise<ModelCard> {
  const backend = await initBackend();
  const model = buildModel('mlp', {
    seed: o.seed ?? 3,
    inputShape: [o.size, o.size, 1],
    classNames: SCREENING_CLASSES,
  });
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
      screening: {
        positiveClass: 'PNEUMONIA',
        targetSensitivity: 0.99,
        threshold: o.abnormalAt ?? 0,
        validationSpared: 0,
      },
    },
  };
  await saveModel(store, model, card);
  model.dispose();
  return card;
}

/** Two NORMAL and two PNEUMONIA radiographs of test/fixtures/chest-xray (CC BY 4.0, see its ATTRIBUTION.md), named by file only. */
export function fixtureRadiographs(): { name: string; data: Buffer }[] {
  const root = fixturesDir();
  return ['NORMAL', 'PNEUMONIA'].flatMap((cls) =>
    readdirSync(path.join(root, cls))
      .filter((f) => f.endsWith('.jpeg'))
      .sort()
      .slice(0, 2)
      .map((f) => ({ name: f, data: readFileSync(path.join(root, cls, f)) })),
  );
}

function fixturesDir(): string {
  // test/helpers -> test/fixtures/chest-xray, from the sources (ts-jest) and from dist/test/helpers.
  const fromSource = path.resolve(__dirname, '..', 'fixtures', 'chest-xray');
  return existsSync(fromSource)
    ? fromSource
    : path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'chest-xray');
}

export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `No Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium (or set TRIAGE_CHROMIUM to another executable).`,
    );
  }
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--force-color-profile=srgb',
      '--window-size=1440,900',
    ],
    defaultViewport: { width: 1440, height: 900 },
  });
}
