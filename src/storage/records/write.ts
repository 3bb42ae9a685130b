/**
 * Idempotent record writes. Every record derived from an upload carries the SHA-256 of the
 * upload's bytes in its blob metadata (`sourcesha256`), so a retry, a re-delivery or a second
 * instance can tell "already written for these bytes" from "written for an older upload" and
 * never duplicates or tears a record: creation is `If-None-Match: *`, replacement is
 * `If-Match: <etag>` of the record it replaces.
 */
import { BlobStore, isNotFound } from '../blobStore';
import { TransientError } from '../../util/errors';

export const SOURCE_SHA_KEY = 'sourcesha256';

/** 'superseded': not written, the input it was derived from has changed since (see `stillCurrent`). */
export type WriteOutcome = 'written' | 'replaced' | 'same' | 'superseded';

export interface RecordWrite {
  container: string;
  blob: string;
  body: Buffer | string;
  sourceSha256: string;
  contentType: string;
  metadata?: Record<string, string>;
  /**
   * Metadata keys (besides the source hash) that must match for an existing record to count as
   * "already written"; e.g. the model version of a prediction. Default: the source hash alone.
   */
  identityKeys?: readonly string[];
  /**
   * Asked before replacing a record written for other source bytes: false when the input this
   * record was derived from has changed since it was read (a newer upload's record must not be
   * replaced by an older one's that finished later). Then nothing is written.
   */
  stillCurrent?: () => Promise<boolean>;
}

const MAX_RACES = 5;

export async function writeRecord(store: BlobStore, w: RecordWrite): Promise<WriteOutcome> {
  const metadata: Record<string, string> = { ...(w.metadata ?? {}), [SOURCE_SHA_KEY]: w.sourceSha256 };
  for (let i = 0; i < MAX_RACES; i++) {
    const created = await store.put(w.container, w.blob, w.body, {
      contentType: w.contentType,
      metadata,
      ifNoneExists: true,
    });
    if (created.written) return 'written';
    const existing = await store.head(w.container, w.blob);
    if (existing === undefined) continue; // deleted in between: try to create again
    if ([SOURCE_SHA_KEY, ...(w.identityKeys ?? [])].every((k) => existing.metadata[k] === metadata[k])) return 'same';
    if (
      w.stillCurrent !== undefined &&
      existing.metadata[SOURCE_SHA_KEY] !== w.sourceSha256 &&
      !(await w.stillCurrent())
    )
      return 'superseded';
    const replaced = await store.put(w.container, w.blob, w.body, {
      contentType: w.contentType,
      metadata,
      ifMatch: existing.etag,
    });
    if (replaced.written) return 'replaced';
  }
  throw new TransientError(`Could not write ${w.container}/${w.blob}: it kept changing under concurrent writers.`);
}

export function writeJsonRecord(
  store: BlobStore,
  container: string,
  blob: string,
  value: unknown,
  sourceSha256: string,
  metadata?: Record<string, string>,
): Promise<WriteOutcome> {
  return writeRecord(store, {
    container,
    blob,
    body: JSON.stringify(value, null, 2) + '\n',
    sourceSha256,
    contentType: 'application/json',
    ...(metadata !== undefined ? { metadata } : {}),
  });
}

/** The source hash a record was written for, or undefined when the record does not exist. */
export async function recordSource(
  store: BlobStore,
  container: string,
  blob: string,
): Promise<{ sha: string | undefined; etag: string } | undefined> {
  const h = await store.head(container, blob);
  return h === undefined ? undefined : { sha: h.metadata[SOURCE_SHA_KEY], etag: h.etag };
}

/**
 * Removes a record that belongs to an older version of the upload (its source hash differs),
 * conditional on its ETag so a concurrent rewrite for the current bytes is never removed.
 * With blob versioning on (as deployed), the removed version stays recoverable.
 */
export async function removeStaleRecord(
  store: BlobStore,
  container: string,
  blob: string,
  currentSha: string,
): Promise<boolean> {
  try {
    const src = await recordSource(store, container, blob);
    if (src === undefined || src.sha === currentSha) return false;
    return await store.deleteIfMatch(container, blob, src.etag);
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
