/**
 * Upload names that cannot carry records of their own (Azure refuses blob names over 1,024
 * characters): they are rejected as invalid-name, the rejection record's own name fits, and
 * status and the sweep count the upload as done.
 */
import { buildDeps } from '../../../src/composition';
import { loadConfig } from '../../../src/config';
import { handlePreprocess, preprocessOnce } from '../../../src/handlers/preprocess';
import type { RejectionRecord } from '../../../src/storage/records/rejection';
import { collectStatus } from '../../../src/storage/records/status';
import { inferOnce } from '../../../src/handlers/infer';
import { handleSweep } from '../../../src/handlers/sweep';
import { CONTAINERS, INVALID_NAMES_FOLDER, MAX_BLOB_NAME, paths } from '../../../src/storage/layout';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { digitPng } from '../../helpers/images';

const steps = { preprocess: preprocessOnce, infer: inferOnce };

describe("names at Azure's length limit", () => {
  it('rejects a 1,020-character upload name with invalid-name in a record whose name fits, and counts it as done', async () => {
    const store = await freshStore();
    const deps = buildDeps(loadConfig({ AzureWebJobsStorage: testConnectionString() }), { store });
    const png = await digitPng(28, { seed: 1 });
    const tooLong = `batch/${'n'.repeat(1020 - 'batch/'.length)}`;
    const longest = `batch/${'m'.repeat(MAX_BLOB_NAME - '.json'.length - 'batch/'.length)}`;
    for (const name of [tooLong, longest]) await store.put(CONTAINERS.uploads, name, png);

    const r = await handlePreprocess({ name: tooLong, data: png }, deps, quietLog);
    expect(r).toMatchObject({ status: 'rejected', code: 'invalid-name' });
    expect(await handlePreprocess({ name: longest, data: png }, deps, quietLog)).toMatchObject({
      status: 'preprocessed',
    });

    const names: string[] = [];
    for (const c of [CONTAINERS.rejected, CONTAINERS.preprocessed])
      for await (const e of store.list(c)) names.push(`${c}/${e.name}`);
    expect(names).toHaveLength(2);
    for (const n of names) expect(n.length - n.indexOf('/') - 1).toBeLessThanOrEqual(MAX_BLOB_NAME);
    const rec = await store.getJson<RejectionRecord>(CONTAINERS.rejected, paths.rejected(tooLong));
    expect(paths.rejected(tooLong).startsWith(INVALID_NAMES_FOLDER)).toBe(true);
    expect(rec?.value).toMatchObject({ upload: tooLong, code: 'invalid-name' });
    expect(rec?.value.message).toContain('1019');

    // A redelivery finds its record; status and the sweep see the upload as done.
    expect(await handlePreprocess({ name: tooLong, data: png }, deps, quietLog)).toMatchObject({
      status: 'already-done',
    });
    const status = await collectStatus(store);
    expect(status).toMatchObject({
      uploads: 2,
      rejected: 1,
      preprocessed: 1,
      pendingPreprocess: 0,
      rejectionsByCode: { 'invalid-name': 1 },
    });
    const sweep = await handleSweep(steps, deps, quietLog, { graceMs: 0 });
    expect(sweep.uploadsRedriven).toBe(0);
    deps.models.dispose();
  });
});
