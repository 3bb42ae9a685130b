/** The demo's own data folder, and the removal of one demo run's uploads and records (models stay). */
import { HOST_CONTAINER, CONTAINERS, paths } from '../../../src/storage/layout';
import { demoDataDir, removeDemoRun } from '../../../src/cli/demoData';
import { freshStore } from '../../helpers/azurite';

describe('demo data', () => {
  it('lives beside the folder npm start uses, never in it', () => {
    expect(demoDataDir(undefined)).toBe('.azurite-demo');
    expect(demoDataDir('/tmp/x/data/')).toBe('/tmp/x/data-demo');
  });

  it("removes one run's uploads, records and receipts, and leaves other batches and the models alone", async () => {
    const store = await freshStore();
    await store.ensureContainers([HOST_CONTAINER]);
    const run = 'demo-20261201T000000/';
    const other = ['batch-1/7/00012.png', 'demo-20261130T000000/3/00001.png'];
    for (const n of [`${run}3/00001.png`, `${run}broken/empty.png`, ...other])
      await store.put(CONTAINERS.uploads, n, Buffer.from('png'));
    for (const n of [`${run}3/00001.png`, ...other]) {
      await store.put(CONTAINERS.preprocessed, `${n}.npy`, Buffer.from('npy'));
      await store.putJson(CONTAINERS.predictions, paths.prediction(n), { n });
      await store.putJson(CONTAINERS.flagged, `${n}.json`, { n });
    }
    await store.putJson(CONTAINERS.rejected, paths.rejected(`${run}broken/empty.png`), { code: 'empty' });
    await store.putJson(CONTAINERS.models, 'demo-cnn-1/card.json', { version: 'demo-cnn-1' });
    await store.putJson(HOST_CONTAINER, paths.receipts('preprocess'), {
      [`uploads/${run}3/00001.png`]: '"e1"',
      [`uploads/${other[0]}`]: '"e2"',
    });

    // Claims left on a run's blobs (named by hash; the body names the blob) go with the run.
    const claim = (c: string, n: string) =>
      store.putJson(HOST_CONTAINER, paths.claim('preprocess', c, n), { function: 'preprocess', blob: `${c}/${n}` });
    await claim(CONTAINERS.uploads, `${run}3/00001.png`);
    await claim(CONTAINERS.preprocessed, `${run}3/00001.png.npy`);
    await claim(CONTAINERS.uploads, other[0] ?? '');

    const removed = await removeDemoRun(store, run);

    const left = async (c: string) => {
      const out: string[] = [];
      for await (const e of store.list(c)) out.push(e.name);
      return out.sort();
    };
    expect(removed).toBe(6);
    expect(await left(CONTAINERS.uploads)).toEqual([...other].sort());
    expect(await left(CONTAINERS.preprocessed)).toEqual(other.map((n) => `${n}.npy`).sort());
    expect(await left(CONTAINERS.predictions)).toEqual(other.map((n) => paths.prediction(n)).sort());
    expect(await left(CONTAINERS.rejected)).toEqual([]);
    expect(await left(CONTAINERS.models)).toEqual(['demo-cnn-1/card.json']);
    expect((await store.getJson(HOST_CONTAINER, paths.receipts('preprocess')))?.value).toEqual({
      [`uploads/${other[0]}`]: '"e2"',
    });
    expect(await left(HOST_CONTAINER)).toEqual(
      [paths.receipts('preprocess'), paths.claim('preprocess', CONTAINERS.uploads, other[0] ?? '')].sort(),
    );
  });
});
