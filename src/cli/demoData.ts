/**
 * Where `npm run demo` keeps its data, and how it removes one run's uploads and records: the demo
 * runs on its own Azurite folder so its digits never mix with the user's own batches.
 */
import path from 'node:path';
import { isNotFound, type BlobStore } from '../storage/blobStore';
import { CONTAINERS, HOST_CONTAINER, paths } from '../storage/layout';
import { removeClaims } from '../storage/claims';

/**
 * The demo's own Azurite folder, beside the one `npm start` uses (TRIAGE_LOCAL_DATA_DIR, default
 * .azurite), so its uploads never mix with the user's batches: `.azurite-demo` by default.
 */
export function demoDataDir(localDataDir: string | undefined): string {
  return `${(localDataDir ?? '.azurite').replace(/[\\/]+$/, '')}-demo`;
}

/**
 * Removes what one demo run wrote under `prefix` (uploads, preprocessed images, records), the
 * embedded runtime's receipts for them and any claim left on them; models stay. Returns the
 * number of blobs removed (claims not counted).
 */
export async function removeDemoRun(store: BlobStore, prefix: string): Promise<number> {
  let removed = 0;
  for (const c of [
    CONTAINERS.uploads,
    CONTAINERS.preprocessed,
    CONTAINERS.predictions,
    CONTAINERS.flagged,
    CONTAINERS.rejected,
    CONTAINERS.labels,
  ]) {
    for await (const e of store.list(c, prefix)) if (await store.deleteIfMatch(c, e.name, e.etag)) removed++;
  }
  try {
    for await (const e of store.list(HOST_CONTAINER, `${path.posix.dirname(paths.receipts('any'))}/`)) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const r = await store.getJson<Record<string, string>>(HOST_CONTAINER, e.name);
        if (r === undefined) break;
        // Keys are "container/blob".
        const kept = Object.fromEntries(
          Object.entries(r.value).filter(([k]) => !k.slice(k.indexOf('/') + 1).startsWith(prefix)),
        );
        if (Object.keys(kept).length === Object.keys(r.value).length) break;
        if ((await store.putJson(HOST_CONTAINER, e.name, kept, { ifMatch: r.etag })).written) break;
      }
    }
  } catch (err) {
    if (!isNotFound(err)) throw err; // no embedded runtime ever ran on this account: no receipts
  }
  await removeClaims(store, { under: prefix });
  return removed;
}

/** A folder as the user would type it: relative to the working directory when inside it, else absolute. */
export function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? abs : rel;
}
