/**
 * The size limit is checked on the size the blob's properties declare, before any decoding: the
 * preprocess registration (as the host and the embedded runtime invoke it) reads
 * `triggerMetadata.properties.contentLength`, and the embedded runtime supplies it as the host does.
 */
import { InvocationContext } from '@azure/functions';
import { loadConfig } from '../../../src/config';
import { buildDeps, runWithDeps } from '../../../src/composition';
import { EmbeddedRuntime, loadFunctionApp } from '../../../src/local/runtime';
import type { RejectionRecord } from '../../../src/storage/records/rejection';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { digitPng } from '../../helpers/images';

const LIMIT = 4000;

describe('upload size: checked on the declared size before decoding', () => {
  let store: BlobStore;
  beforeEach(async () => {
    store = await freshStore();
  });

  const config = () =>
    loadConfig({
      AzureWebJobsStorage: testConnectionString(),
      TRIAGE_MAX_UPLOAD_BYTES: String(LIMIT),
      TRIAGE_LOCAL_POLL_MS: '50',
      TRIAGE_LOCAL_HTTP_PORT: '0',
    });

  it('the preprocess registration rejects a blob whose properties declare more than the limit, without decoding its bytes', async () => {
    const preprocess = loadFunctionApp().find((f) => f.name === 'preprocess')!;
    const deps = buildDeps(config(), { store });
    const png = await digitPng(28, { seed: 1 });
    expect(png.length).toBeLessThan(LIMIT);
    const invoke = (name: string, contentLength: number) =>
      runWithDeps(deps, () =>
        Promise.resolve(
          preprocess.callback(
            png,
            new InvocationContext({
              functionName: 'preprocess',
              triggerMetadata: { name, properties: { contentLength } },
            }),
          ),
        ),
      );
    try {
      // A valid image: only the declared size can make it too large.
      await invoke('declared-big.png', 5_000_000);
      const rec = await store.getJson<RejectionRecord>(CONTAINERS.rejected, paths.rejected('declared-big.png'));
      expect(rec?.value).toMatchObject({
        code: 'too-large',
        detail: { bytes: 5_000_000, maxInputBytes: LIMIT },
        source: { bytes: png.length },
      });
      expect(await store.head(CONTAINERS.preprocessed, paths.preprocessed('declared-big.png'))).toBeUndefined();

      // The same bytes with their true size: preprocessed.
      await invoke('declared-true.png', png.length);
      expect(await store.head(CONTAINERS.preprocessed, paths.preprocessed('declared-true.png'))).toBeDefined();
      expect(await store.head(CONTAINERS.rejected, paths.rejected('declared-true.png'))).toBeUndefined();
    } finally {
      deps.models.dispose();
    }
  });

  it('the embedded runtime gives blob functions the blob properties the host gives, so an upload over the limit is rejected', async () => {
    const big = Buffer.concat([await digitPng(28, { seed: 2 }), Buffer.alloc(LIMIT)]);
    await store.put(CONTAINERS.uploads, 'over.png', big);
    await store.put(CONTAINERS.uploads, 'under.png', await digitPng(28, { seed: 3 }));
    const rt = await EmbeddedRuntime.start({
      config: config(),
      settings: { RETRAIN_SCHEDULE: '0 0 2 * * *', SWEEP_SCHEDULE: '0 0 0 1 1 *' },
      log: quietLog,
    });
    try {
      await rt.waitForIdle();
    } finally {
      await rt.stop();
    }
    const rec = await store.getJson<RejectionRecord>(CONTAINERS.rejected, paths.rejected('over.png'));
    expect(rec?.value).toMatchObject({ code: 'too-large', detail: { bytes: big.length, maxInputBytes: LIMIT } });
    expect(await store.head(CONTAINERS.preprocessed, paths.preprocessed('under.png'))).toBeDefined();
  });
});
