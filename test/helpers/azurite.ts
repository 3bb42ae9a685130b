/**
 * Integration tests share the Azurite that globalSetup started for their jest worker.
 * Files in one worker run one after another; `freshStore()` empties the account first.
 */
import { BlobStore } from '../../src/storage/blobStore';
import type { Log } from '../../src/util/log';

/** Tests keep the console for failures: only errors are printed. */
export const quietLog: Log = { info() {}, warn() {}, error: (m: string) => console.error(m) };

export function testConnectionString(): string {
  const raw = process.env.TRIAGE_TEST_AZURITE;
  if (raw === undefined)
    throw new Error('TRIAGE_TEST_AZURITE is not set: run the tests through jest (globalSetup starts Azurite).');
  const list = JSON.parse(raw) as string[];
  const worker = Math.max(1, Number(process.env.JEST_WORKER_ID ?? '1'));
  const cs = list[(worker - 1) % list.length];
  if (cs === undefined) throw new Error('globalSetup started no Azurite');
  return cs;
}

/** A store on this worker's Azurite with every container deleted and the layout's created anew. */
export async function freshStore(): Promise<BlobStore> {
  const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: testConnectionString() });
  for await (const c of store.service.listContainers()) {
    await store.service.deleteContainer(c.name);
  }
  // Azurite deletes containers at once; recreate the layout.
  await store.ensureContainers();
  return store;
}
