/**
 * The worklist over more flagged images than one listing request returns (LISTING_PAGE): every
 * image once, in priority order across listing pages; while a new listing runs behind a stale
 * snapshot, each answer agrees with itself (its total, its reason counts and its order), and the
 * image flagged meanwhile comes once the new listing is done.
 */
import type { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { LISTING_PAGE, readWorklist, Worklist } from '../../../src/triage/worklist';
import { mapLimit } from '../../../src/util/mapLimit';
import { freshStore } from '../../helpers/azurite';

function flag(store: BlobStore, name: string, priority: number, reason: string) {
  return store.put(CONTAINERS.flagged, paths.flagged(name), JSON.stringify({ upload: name }), {
    contentType: 'application/json',
    metadata: { priority: priority.toFixed(6), reasons: reason },
  });
}

function selfConsistent(w: Worklist): void {
  expect(Object.values(w.reasonCounts).reduce((a, b) => a + b, 0)).toBe(w.total);
  const p = w.items.map((i) => i.priority);
  expect(p).toEqual([...p].sort((a, b) => b - a));
}

describe('the worklist over several listing pages', () => {
  it('has every flagged image once, in priority order; a stale snapshot answers consistently until the new listing has the newcomer', async () => {
    const store = await freshStore();
    const n = LISTING_PAGE + 37;
    const names = Array.from({ length: n }, (_, i) => `w/${String(i).padStart(5, '0')}.png`);
    // Priority rises with the name: the worklist's order is the reverse of the listing's.
    await mapLimit(names, 16, (name, i) => flag(store, name, 1 + i / n, i % 3 === 0 ? 'abnormal' : 'low-confidence'));

    const listed: string[] = [];
    for await (const e of store.list(CONTAINERS.flagged, 'w/', true, 100)) {
      expect(e.metadata.priority).toBeDefined();
      listed.push(e.name);
    }
    expect(listed).toEqual(names.map((x) => paths.flagged(x)));

    // The first page, the one across the listing pages' boundary (worklist position n - 1 - LISTING_PAGE), the last.
    const pageSize = 25;
    const boundary = Math.floor((n - 1 - LISTING_PAGE) / pageSize) + 1;
    const last = Math.ceil(n / pageSize);
    for (const page of [1, boundary, last]) {
      const w = await readWorklist(store, { page, pageSize });
      expect(w.total).toBe(n);
      selfConsistent(w);
      const from = (page - 1) * pageSize;
      const want = [...names].reverse().slice(from, from + pageSize);
      expect(w.items.map((i) => i.upload)).toEqual(want);
    }

    // Flagged meanwhile, most urgent of all: answers keep to one snapshot until a new listing has it.
    await flag(store, 'w/zz-new.png', 2.5, 'abnormal');
    const deadline = Date.now() + 120_000;
    let w = await readWorklist(store, { page: 1, pageSize: 5 }, { maxAgeMs: 0 });
    while (w.total === n && Date.now() < deadline) {
      selfConsistent(w);
      expect(w.items[0]?.upload).toBe(names[n - 1]);
      await new Promise((r) => setTimeout(r, 50));
      w = await readWorklist(store, { page: 1, pageSize: 5 }, { maxAgeMs: 0 });
    }
    expect(w.total).toBe(n + 1);
    selfConsistent(w);
    expect(w.items[0]?.upload).toBe('w/zz-new.png');
  });
});
