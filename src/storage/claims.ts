/**
 * Claims: work on one version of a blob is claimed before it is done, so that it is done once per
 * account however many instances are told about it (two embedded runtimes scanning the same
 * containers, a sweep re-driving what a trigger is still working on, an event delivered twice).
 *
 * A claim is a blob in the host container, one per function and triggering blob, written with a
 * condition only (If-None-Match: * to create, If-Match to take over), so it works the same on Blob
 * Storage and on Azurite. Its metadata names the triggering blob's ETag and the instance. A claim
 * for the same ETag that is younger than CLAIM_TIMEOUT_MS means someone else is on it: the work is
 * skipped. An older one was abandoned (its instance died) and is taken over; so is a claim for
 * another ETag (a changed re-upload). A claim is removed when the work ends, done or thrown, so
 * claims do not pile up (one blob per upload otherwise) and a retry is not held up. The work must
 * therefore find out itself that it was done already (its record exists for these bytes): whoever
 * claims after the record was written finds it, whoever claims before finds the claim. A claim
 * whose removal did not get through (storage went away) is abandoned once it is old, and the sweep
 * removes abandoned claims (removeClaims).
 */
import { randomUUID } from 'node:crypto';
import { BlobStore, isNotFound } from './blobStore';
import { HOST_CONTAINER, paths } from './layout';
import type { Log } from '../util/log';

/** A claim older than this is abandoned. Longer than any one image takes; a crashed instance's work waits this long for the sweep. */
export const CLAIM_TIMEOUT_MS = 2 * 60_000;

export interface ClaimTarget {
  /** The function doing the work (claims of different functions are independent). */
  fn: string;
  container: string;
  name: string;
  /** ETag of the version being processed. */
  etag: string;
}

export interface ClaimOptions {
  instanceId: string;
  now: () => Date;
  timeoutMs?: number;
}

/**
 * Tokens of claims this process may have written and let go of without removing them (the work
 * failed and the removal did not get through, or the claim's write got no answer): it may take
 * them over at once, rather than after the timeout.
 */
const abandonedHere = new Map<string, string>();
const MAX_ABANDONED = 10_000;

function forget(blob: string, token: string): void {
  if (abandonedHere.size >= MAX_ABANDONED) abandonedHere.clear();
  abandonedHere.set(blob, token);
}

function claimBlob(t: ClaimTarget): string {
  return paths.claim(t.fn, t.container, t.name);
}

/**
 * Whether someone else holds a live claim on this version (undefined: no live claim; the work may
 * be done). One HEAD; for the sweep, which only looks.
 */
export async function liveClaim(
  store: BlobStore,
  t: ClaimTarget,
  opts: ClaimOptions,
): Promise<{ by: string; ageMs: number } | undefined> {
  const h = await store.head(HOST_CONTAINER, claimBlob(t));
  if (h === undefined || h.metadata.etag !== t.etag) return undefined;
  const ageMs = opts.now().getTime() - (h.lastModified?.getTime() ?? 0);
  if (ageMs >= (opts.timeoutMs ?? CLAIM_TIMEOUT_MS) || abandonedHere.get(claimBlob(t)) === h.metadata.token)
    return undefined;
  return { by: h.metadata.instance ?? 'unknown', ageMs };
}

/** Claims the version for this instance (`held` with the claim's ETag), or says who holds it. */
async function acquire(
  store: BlobStore,
  t: ClaimTarget,
  opts: ClaimOptions,
): Promise<{ held: true; claimEtag: string; token: string } | { held: false; by: string; ageMs: number }> {
  const blob = claimBlob(t);
  // The token tells this attempt's own claim (a write that succeeded but whose answer was lost,
  // then retried by the storage client, finds it) from another run's.
  const token = randomUUID();
  const metadata = { etag: t.etag, instance: opts.instanceId, token };
  const body = JSON.stringify({
    function: t.fn,
    blob: `${t.container}/${t.name}`,
    etag: t.etag,
    instance: opts.instanceId,
    at: opts.now().toISOString(),
  });
  try {
    for (let race = 0; race < 3; race++) {
      const created = await store
        .put(HOST_CONTAINER, blob, body, { contentType: 'application/json', metadata, ifNoneExists: true })
        .catch(async (err: unknown) => {
          // The host container is the Functions host's (and the embedded runtime's); a bare account may lack it.
          if (!isNotFound(err)) throw err;
          await store.container(HOST_CONTAINER).createIfNotExists();
          return store.put(HOST_CONTAINER, blob, body, {
            contentType: 'application/json',
            metadata,
            ifNoneExists: true,
          });
        });
      if (created.written) return { held: true, claimEtag: created.etag, token };
      const h = await store.head(HOST_CONTAINER, blob);
      if (h === undefined) continue; // removed in between: create it again
      if (h.metadata.token === token) return { held: true, claimEtag: h.etag, token };
      const ageMs = opts.now().getTime() - (h.lastModified?.getTime() ?? 0);
      const live =
        h.metadata.etag === t.etag &&
        ageMs < (opts.timeoutMs ?? CLAIM_TIMEOUT_MS) &&
        abandonedHere.get(blob) !== h.metadata.token;
      if (live) return { held: false, by: h.metadata.instance ?? 'unknown', ageMs };
      const taken = await store.put(HOST_CONTAINER, blob, body, {
        contentType: 'application/json',
        metadata,
        ifMatch: h.etag,
      });
      if (taken.written) {
        abandonedHere.delete(blob);
        return { held: true, claimEtag: taken.etag, token };
      }
    }
  } catch (err) {
    // The claim may have been written without an answer coming back: it is this process's to take over.
    forget(blob, token);
    throw err;
  }
  // Others kept taking it over: one of them holds it.
  return { held: false, by: 'another instance', ageMs: 0 };
}

/**
 * Runs `work` under a claim on the version: returns its result, or `{ done: false }` naming who
 * holds the claim. The claim is removed when `work` ends; a throw from it passes through.
 */
export async function withClaim<T>(
  store: BlobStore,
  t: ClaimTarget,
  opts: ClaimOptions,
  work: () => Promise<T>,
): Promise<{ done: true; value: T } | { done: false; by: string; ageMs: number }> {
  const c = await acquire(store, t, opts);
  if (!c.held) return { done: false, by: c.by, ageMs: c.ageMs };
  const blob = claimBlob(t);
  const release = async () => {
    const removed = await store.deleteIfMatch(HOST_CONTAINER, blob, c.claimEtag).catch(() => false);
    // Storage unreachable (or the claim was taken over meanwhile): if it stays, this process may
    // take it over at once when it retries, and the sweep removes it once it is abandoned.
    if (!removed) forget(blob, c.token);
  };
  let value: T;
  try {
    value = await work();
  } catch (err) {
    await release();
    throw err;
  }
  await release();
  return { done: true, value };
}

/** What a function run under a claim returns when another instance holds it. */
export interface ClaimedElsewhere {
  status: 'claimed-elsewhere';
  by: string;
}

/**
 * A function's work on one version of a triggering blob, under a claim on it (withClaim): what
 * the triggers and the sweep call, so that it is done once per account. Without an ETag (the
 * trigger gave none) it simply runs. A skip is logged ("<fn> skipped: ...") and returned.
 */
export async function runClaimed<T>(
  t: Omit<ClaimTarget, 'etag'> & { etag: string | undefined; upload: string },
  deps: { store: BlobStore; instanceId: string; now: () => Date },
  log: Log,
  work: () => Promise<T>,
  timeoutMs?: number,
): Promise<T | ClaimedElsewhere> {
  if (t.etag === undefined) return work();
  const target = { fn: t.fn, container: t.container, name: t.name, etag: t.etag };
  const opts = { instanceId: deps.instanceId, now: deps.now, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
  const r = await withClaim(deps.store, target, opts, work);
  if (r.done) return r.value;
  log.info(`${t.fn} skipped: ${t.upload} (${t.etag}) is claimed by ${r.by} (${Math.round(r.ageMs / 1000)} s ago)`);
  return { status: 'claimed-elsewhere', by: r.by };
}

/**
 * Removes claim blobs: those last written before `olderThan` (abandoned: their holder died or
 * could not remove them), and/or those on blobs whose name starts with `under` (in any container;
 * the demo's cleanup of one run). Conditional on the listed ETag, so a claim written again
 * meanwhile stays. Returns how many were removed.
 */
export async function removeClaims(store: BlobStore, pick: { olderThan?: Date; under?: string }): Promise<number> {
  let removed = 0;
  try {
    for await (const e of store.list(HOST_CONTAINER, paths.claimsFolder())) {
      if (pick.olderThan !== undefined && e.lastModified.getTime() >= pick.olderThan.getTime()) continue;
      if (pick.under !== undefined) {
        // Claim blobs are named by hash: the claimed blob's name is in the body ("container/name").
        const claimed = (await store.getJson<{ blob?: string }>(HOST_CONTAINER, e.name))?.value.blob;
        if (claimed === undefined || !claimed.slice(claimed.indexOf('/') + 1).startsWith(pick.under)) continue;
      }
      if (await store.deleteIfMatch(HOST_CONTAINER, e.name, e.etag)) removed++;
    }
  } catch (err) {
    if (!isNotFound(err)) throw err; // no host container: no claims
  }
  return removed;
}
