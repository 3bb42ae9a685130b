/**
 * Two embedded runtimes on one storage account: both are told about every upload (each scans
 * uploads/), but work is claimed before it is done, so each upload is preprocessed once; and the
 * sweep re-drives only uploads nobody holds a live claim on (an abandoned claim is re-driven).
 */
import { buildDeps } from '../../../src/composition';
import { Config, loadConfig } from '../../../src/config';
import { handleSweep } from '../../../src/handlers/sweep';
import type { Log } from '../../../src/util/log';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import { BlobStore, isNotFound, sha256 } from '../../../src/storage/blobStore';
import { withClaim } from '../../../src/storage/claims';
import {
  CONTAINERS,
  HOST_CONTAINER,
  paths,
  uploadNameFromPreprocessed,
  uploadNameFromRecord,
} from '../../../src/storage/layout';
import { inferOnce } from '../../../src/handlers/infer';
import { preprocessOnce } from '../../../src/handlers/preprocess';
import { readPreprocessedRecord } from '../../../src/storage/records/preprocessed';
import { promote } from '../../../src/registry/registry';
import { freshStore, testConnectionString } from '../../helpers/azurite';
import { saveTestModel } from '../../helpers/models';
import { digitPng } from '../../helpers/images';

const settings = { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' };

function configFor(extra: Record<string, string> = {}): Config {
  return loadConfig({
    AzureWebJobsStorage: testConnectionString(),
    TRIAGE_LOCAL_POLL_MS: '50',
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_LOCAL_CONCURRENCY: '4',
    ...extra,
  });
}

/** Lines of a runtime's log, and how many preprocess and scoring runs (handler executions) they record. */
function countingLog(): {
  log: Log;
  runs: () => number;
  skips: () => number;
  scorings: () => number;
  scoringSkips: () => number;
} {
  const lines: string[] = [];
  const log: Log = {
    info: (m) => void lines.push(m),
    warn: (m) => void lines.push(m),
    error: (m) => void lines.push(m),
  };
  return {
    log,
    // Every handlePreprocess run logs one line "preprocess: <name> -> ..." (or "... rejected", "... already rejected").
    runs: () => lines.filter((l) => l.startsWith('[preprocess] preprocess: ')).length,
    skips: () => lines.filter((l) => l.startsWith('[preprocess] preprocess skipped: ')).length,
    // Every scoring (model run) logs one line "infer: <name> -> <class> ...", also when its record was there already.
    scorings: () => lines.filter((l) => /^\[infer\] infer: .* -> /.test(l)).length,
    scoringSkips: () => lines.filter((l) => l.startsWith('[infer] infer skipped: ')).length,
  };
}

/** Claim blobs left in the account (a claim is removed when its work ends). */
async function claimsLeft(store: BlobStore): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of store.list(HOST_CONTAINER, paths.claimsFolder())) out.push(e.name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return out;
}

async function terminalRecords(store: BlobStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const add = (name: string | undefined, kind: string) => {
    if (name !== undefined) out.set(name, [...(out.get(name) ?? []), kind]);
  };
  for await (const e of store.list(CONTAINERS.preprocessed)) add(uploadNameFromPreprocessed(e.name), 'preprocessed');
  for await (const e of store.list(CONTAINERS.rejected)) add(uploadNameFromRecord(e.name), 'rejected');
  return out;
}

describe('two runtimes on one account', () => {
  let store: BlobStore;
  beforeEach(async () => {
    store = await freshStore();
  });

  it('preprocess each upload exactly once, with exactly one terminal record and one prediction each', async () => {
    const N = 60;
    // Untrained: what is counted is the scoring runs, not what they say.
    await saveTestModel(store, { version: 'two-1' });
    await promote(store, 'two-1', { by: 'test', reason: 'two runtimes' });
    const la = countingLog();
    const lb = countingLog();
    const a = await EmbeddedRuntime.start({ config: configFor(), settings, instanceId: 'A', log: la.log });
    const b = await EmbeddedRuntime.start({ config: configFor(), settings, instanceId: 'B', log: lb.log });
    try {
      const files = new Map<string, Buffer>();
      for (let i = 0; i < N; i++) files.set(`two/${i}.png`, await digitPng(28 + (i % 3) * 16, { seed: i }));
      await Promise.all([...files].map(([name, data]) => store.put(CONTAINERS.uploads, name, data)));
      await Promise.all([a.waitForIdle(), b.waitForIdle()]);
      // Idle again: each lists every container once more, so each is told about every image the other wrote.
      await Promise.all([a.waitForIdle(), b.waitForIdle()]);

      const records = await terminalRecords(store);
      expect(records.size).toBe(N);
      for (const [name, kinds] of records) expect({ name, kinds }).toEqual({ name, kinds: ['preprocessed'] });
      for (const [name, data] of files)
        expect((await readPreprocessedRecord(store, name))?.source.sha256).toBe(sha256(data));
      // Each upload was run once, by one of them; the other found it claimed.
      expect(la.runs() + lb.runs()).toBe(N);
      expect(la.runs() + lb.runs() + la.skips() + lb.skips()).toBeGreaterThan(N);
      // Each image has one prediction. Scoring is not claimed by the trigger: each runtime is told
      // about every image, and the one told after the record was written skips it, so only an
      // image both started before either wrote its record is scored twice (not every one).
      const predictions: string[] = [];
      for await (const e of store.list(CONTAINERS.predictions)) predictions.push(e.name);
      expect(predictions.sort()).toEqual([...files.keys()].map((n) => `${n}.json`).sort());
      const scorings = la.scorings() + lb.scorings();
      expect(scorings).toBeGreaterThanOrEqual(N);
      expect(scorings).toBeLessThan(2 * N);
      expect(scorings + la.scoringSkips() + lb.scoringSkips()).toBeGreaterThanOrEqual(2 * N);
      // Claims do not pile up: each was removed when its work ended.
      expect(await claimsLeft(store)).toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('sweep: leaves an upload with a live claim alone and re-drives it once the claim is abandoned', async () => {
    const deps = buildDeps(configFor(), { instanceId: 'sweeper' });
    const quiet: Log = { info() {}, warn() {}, error: (m) => console.error(m) };
    try {
      const put = await store.put(CONTAINERS.uploads, 'claimed/a.png', await digitPng(28));
      if (!put.written) throw new Error('upload not written');
      // Another instance is working on it: its claim is live while its work runs.
      let finish: () => void = () => {};
      const working = new Promise<void>((r) => (finish = r));
      let claimedNow: () => void = () => {};
      const claimed = new Promise<void>((r) => (claimedNow = r));
      const other = withClaim(
        store,
        { fn: 'preprocess', container: CONTAINERS.uploads, name: 'claimed/a.png', etag: put.etag },
        { instanceId: 'other', now: () => new Date() },
        async () => {
          claimedNow();
          await working;
          throw new Error('the other instance died');
        },
      );
      await claimed;
      expect(
        await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, deps, quiet, { graceMs: 0 }),
      ).toMatchObject({ uploadsRedriven: 0, uploadsClaimed: 1, errors: 0 });
      expect(await store.head(CONTAINERS.preprocessed, 'claimed/a.png.npy')).toBeUndefined();
      // Still claimed, but older than the timeout: abandoned, so the sweep re-drives it.
      await new Promise((r) => setTimeout(r, 1500));
      expect(
        await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, deps, quiet, {
          graceMs: 0,
          claimTimeoutMs: 1000,
        }),
      ).toMatchObject({ uploadsRedriven: 1, uploadsClaimed: 0, errors: 0 });
      expect(await store.head(CONTAINERS.preprocessed, 'claimed/a.png.npy')).toBeDefined();
      finish();
      await expect(other).rejects.toThrow('the other instance died');
      // The sweep removed the claim it took over when its work ended; the dead holder's is gone with it.
      expect(await claimsLeft(store)).toEqual([]);

      // A claim nobody removed (its holder died after writing it) goes once it is abandoned.
      const left = await store.put(
        HOST_CONTAINER,
        paths.claim('preprocess', CONTAINERS.uploads, 'gone/b.png'),
        JSON.stringify({ function: 'preprocess', blob: 'uploads/gone/b.png' }),
        { metadata: { etag: '"x"', instance: 'dead', token: 't' } },
      );
      expect(left.written).toBe(true);
      expect(await claimsLeft(store)).toHaveLength(1);
      expect(
        await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, deps, quiet, { graceMs: 0 }),
      ).toMatchObject({ claimsRemoved: 0, errors: 0 });
      expect(await claimsLeft(store)).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 1500));
      expect(
        await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, deps, quiet, {
          graceMs: 0,
          claimTimeoutMs: 1000,
        }),
      ).toMatchObject({ claimsRemoved: 1, errors: 0 });
      expect(await claimsLeft(store)).toEqual([]);
    } finally {
      deps.models.dispose();
    }
  });
});
