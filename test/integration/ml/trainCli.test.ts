import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { freshStore } from '../../helpers/azurite';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { encodeNpy } from '../../../src/imaging/npy';
import { loadMnistPackage } from '../../../src/ml/data/mnistPackage';
import { registerMlCommands } from '../../../src/cli/commands/train';
import { loadModel } from '../../../src/ml/modelStore';

describe('triage train --data blob --store / triage evaluate --version', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ml-cli-blob-'));
  let store: BlobStore;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const program = (lines: string[]) => {
    const p = new Command('triage').exitOverride();
    registerMlCommands(p, {
      getStore: () => store,
      stderr: { write: () => true } as unknown as NodeJS.WriteStream,
      print: (l) => void lines.push(l),
    });
    return p;
  };

  it('trains on labeled blobs, stores models/{version}/ and evaluates the stored version', async () => {
    store = await freshStore();
    const { train } = loadMnistPackage();
    const n = 300;
    const put: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const name = `reviewed/${i}.png`;
      put.push(
        store.put(
          CONTAINERS.preprocessed,
          paths.preprocessed(name),
          encodeNpy(train.images.slice(i * 784, (i + 1) * 784), [28, 28, 1]),
        ),
      );
      put.push(store.putJson(CONTAINERS.labels, paths.label(name), { class: String(train.labels[i]), reviewer: 'r1' }));
    }
    await Promise.all(put);

    const lines: string[] = [];
    await program(lines).parseAsync(
      ['train', '--data', 'blob', '--model', 'mlp', '--epochs', '3', '--store', '--version', 'blob-1', '--no-plots'],
      { from: 'user' },
    );
    expect(lines).toContain('saved model version blob-1 to models/blob-1/ (not promoted)');
    const { card } = await loadModel(store, 'blob-1');
    expect(card.data.source).toBe('blob:labels:train');
    expect(card.data.trainImages + card.data.validationImages + (card.data.testImages ?? 0)).toBe(n);
    expect(card.metrics.accuracy).toBeGreaterThan(0.3); // 10 classes, ~220 training images, 3 epochs

    await program([]).parseAsync(['evaluate', '--data', 'blob', '--version', 'blob-1', '--out', dir, '--no-plots'], {
      from: 'user',
    });
    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as {
      accuracy: number;
      version: string;
    };
    expect(metrics.version).toBe('blob-1');
    expect(metrics.accuracy).toBeCloseTo(card.metrics.accuracy as number, 10);
  });
});
