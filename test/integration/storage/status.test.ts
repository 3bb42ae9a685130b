/**
 * GET /api/status serves a snapshot (cachedStatus): one collection for concurrent callers, the
 * snapshot's age in the answer, and a refresh behind the answer once it is old enough.
 */
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS } from '../../../src/storage/layout';
import { cachedStatus, collectStatus } from '../../../src/storage/records/status';
import { freshStore, testConnectionString } from '../../helpers/azurite';

describe('status snapshot', () => {
  it('lists once for concurrent callers, says its age, and refreshes behind the answer', async () => {
    await freshStore();
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: testConnectionString() });
    for (const n of ['a.png', 'b.png']) await store.put(CONTAINERS.uploads, n, 'x');
    let clock = 1_000_000;
    const now = () => clock;

    const listings: string[] = [];
    const onRequest = (msg: unknown): void => {
      const req = (msg as { request: ClientRequest }).request;
      if (req.path.includes(`/${CONTAINERS.uploads}?`) && req.path.includes('comp=list')) listings.push(req.path);
    };
    diagnostics.subscribe('http.client.request.start', onRequest);
    try {
      const first = await Promise.all(Array.from({ length: 5 }, () => cachedStatus(store, undefined, { now })));
      expect(listings).toHaveLength(1);
      for (const s of first)
        expect(s).toMatchObject({ uploads: 2, ageSeconds: 0, refreshing: false, asOf: new Date(clock).toISOString() });

      await store.put(CONTAINERS.uploads, 'c.png', 'x');
      clock += 10_000;
      expect(await cachedStatus(store, undefined, { now })).toMatchObject({
        uploads: 2,
        ageSeconds: 10,
        refreshing: false,
      });
      expect(listings).toHaveLength(1);

      clock += 30_000;
      const stale = await cachedStatus(store, undefined, { now });
      expect(stale).toMatchObject({ uploads: 2, ageSeconds: 40, refreshing: true });
      let fresh = stale;
      for (let i = 0; i < 10_000 && fresh.uploads !== 3; i++) {
        await new Promise((r) => setTimeout(r, 10));
        fresh = await cachedStatus(store, undefined, { now });
      }
      expect(fresh).toMatchObject({ uploads: 3, ageSeconds: 0, refreshing: false });
      expect(listings).toHaveLength(2);
      // The snapshot is the exact report of its time.
      const { asOf: _a, ageSeconds: _s, refreshing: _r, ...report } = fresh;
      expect(report).toEqual(await collectStatus(store));
    } finally {
      diagnostics.unsubscribe('http.client.request.start', onRequest);
    }
  });
});
