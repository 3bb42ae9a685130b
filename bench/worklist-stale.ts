/**
 * A worklist page read while the worklist's listing runs (what happens right after an instance's
 * snapshot goes stale: the stale snapshot answers, a new listing runs behind it), by listing page
 * size (`npm run bench:worklist-stale`). In one process, alternating: the time to list every
 * flagged record with metadata at each page size alone, and the time to read a worklist page not
 * read before (25 items: each its record and its upload's properties) alone and during that listing.
 *
 *   npm run bench:worklist-stale -- [--flagged 10050] [--rounds 3] [--pages 5000,500]
 */
import { startAzurite } from '@image-triage/local-functions-host';
import { BlobStore } from '../src/storage/blobStore';
import { CONTAINERS, paths } from '../src/storage/layout';
import { readWorklist } from '../src/triage/worklist';
import { mapLimit } from '../src/util/mapLimit';
import { argValue, machine, uptime } from './support';

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main(): Promise<void> {
  const flagged = Number(argValue('--flagged', '10050'));
  const rounds = Number(argValue('--rounds', '3'));
  const sizes = argValue('--pages', '5000,500').split(',').map(Number);
  const before = uptime();
  const azurite = await startAzurite();
  try {
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
    await store.ensureContainers();
    const body = JSON.stringify({
      topClass: 'PNEUMONIA',
      confidence: 0.6,
      probabilities: { NORMAL: 0.4, PNEUMONIA: 0.6 },
    });
    const names = Array.from({ length: flagged }, (_, i) => `backlog/${String(i).padStart(5, '0')}.png`);
    await mapLimit(names, 16, (n, i) =>
      store.put(CONTAINERS.flagged, paths.flagged(n), body, {
        contentType: 'application/json',
        metadata: { priority: (1 + i / flagged).toFixed(6), reasons: 'low-confidence' },
      }),
    );
    const pageSize = 25;
    const lastPage = Math.ceil(flagged / pageSize);
    await readWorklist(store, { page: 1, pageSize }, { maxAgeMs: 3_600_000 }); // the snapshot, kept fresh below
    let next = lastPage; // every page read is of items not read before
    const page = () => readWorklist(store, { page: next--, pageSize }, { maxAgeMs: 3_600_000 });
    const list = async (size: number) => {
      for await (const _ of store.list(CONTAINERS.flagged, undefined, true, size));
    };
    const rows: string[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const size of sizes) {
        const listMs = await timed(() => list(size));
        const aloneMs = await timed(page);
        const listing = list(size);
        await new Promise((res) => setTimeout(res, 50)); // the listing's first request is under way
        const duringMs = await timed(page);
        await listing;
        rows.push(`| ${r + 1} | ${size} | ${listMs.toFixed(0)} | ${aloneMs.toFixed(0)} | ${duringMs.toFixed(0)} |`);
        console.log(rows[rows.length - 1]);
      }
    }
    console.log(`\n${machine()}\nLoad before: ${before}; after: ${uptime()}`);
    console.log(`${flagged} flagged records in in-memory Azurite; a worklist page is ${pageSize} items.\n`);
    console.log(
      '| round | listing page size | listing alone (ms) | page read alone (ms) | page read during the listing (ms) |',
    );
    console.log('|---|---|---|---|---|');
    for (const row of rows) console.log(row);
  } finally {
    await azurite.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
