/**
 * sweep (timer): the safety net behind the event-driven path.
 *  - uploads that have no terminal record some minutes after they were written (an event that
 *    never arrived, or a blob that went to the poison queue for a transient reason) are run
 *    through preprocess again;
 *  - preprocessed images without a prediction (they waited for a first model) are scored.
 * Both handlers are idempotent, an upload is re-driven only when no run holds a live claim on it
 * and an image is scored under a claim (src/storage/claims.ts), so a sweep that overlaps the
 * event-driven path repeats no work. Abandoned claims are removed. The
 * handlers are handed in (`SweepSteps`): a handler never imports another one.
 */
import type { Deps } from '../composition';
import { CONTAINERS, paths, uploadNameFromPreprocessed, uploadNameFromRecord } from '../storage/layout';
import { CLAIM_TIMEOUT_MS, liveClaim, removeClaims } from '../storage/claims';
import type { Log } from '../util/log';

/** The two steps a sweep re-drives: preprocessOnce and inferOnce (each under a claim). */
export interface SweepSteps {
  preprocess(
    input: { name: string; data: Buffer },
    etag: string | undefined,
    deps: Deps,
    log: Log,
    claimTimeoutMs?: number,
  ): Promise<{ status: string }>;
  infer(
    input: { name: string; data: Buffer; metadata?: Record<string, string> },
    etag: string | undefined,
    deps: Deps,
    log: Log,
    claimTimeoutMs?: number,
  ): Promise<{ status: string }>;
}

export interface SweepOptions {
  /** Uploads younger than this are left to their own event. Default 2 minutes. */
  graceMs?: number;
  /** At most this many items per sweep (the timer has a time limit). Default 2000. */
  maxItems?: number;
  /** A claim older than this was abandoned (its run died): the upload is re-driven. Default CLAIM_TIMEOUT_MS. */
  claimTimeoutMs?: number;
}

export interface SweepReport {
  uploadsRedriven: number;
  /** Uploads without a record that another run (a trigger, another instance) has claimed and is working on. */
  uploadsClaimed: number;
  imagesScored: number;
  /** Images without a prediction that another run is scoring. */
  imagesClaimed: number;
  stillWaiting: number;
  /** Abandoned claims removed (their holder died, or could not remove them). */
  claimsRemoved: number;
  errors: number;
}

async function nameSet(deps: Deps, container: string, map: (n: string) => string | undefined): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const e of deps.store.list(container)) {
    const n = map(e.name);
    if (n !== undefined) out.add(n);
  }
  return out;
}

export async function handleSweep(
  steps: SweepSteps,
  deps: Deps,
  log: Log,
  opts: SweepOptions = {},
): Promise<SweepReport> {
  const graceMs = opts.graceMs ?? 120_000;
  let budget = opts.maxItems ?? 2000;
  const report: SweepReport = {
    uploadsRedriven: 0,
    uploadsClaimed: 0,
    imagesScored: 0,
    imagesClaimed: 0,
    stillWaiting: 0,
    claimsRemoved: 0,
    errors: 0,
  };
  const { store } = deps;

  const [preprocessed, rejected, predicted] = await Promise.all([
    nameSet(deps, CONTAINERS.preprocessed, uploadNameFromPreprocessed),
    // Rejection record names (not upload names): a name that cannot carry its own has a hashed one.
    nameSet(deps, CONTAINERS.rejected, (n) => n),
    nameSet(deps, CONTAINERS.predictions, uploadNameFromRecord),
  ]);

  const cutoff = deps.now().getTime() - graceMs;
  for await (const e of store.list(CONTAINERS.uploads)) {
    if (budget <= 0) break;
    if (preprocessed.has(e.name) || rejected.has(paths.rejected(e.name)) || e.lastModified.getTime() > cutoff) continue;
    budget--;
    try {
      // Only what nobody is working on: a live claim on this version means a run is under way.
      const claim = { fn: 'preprocess', container: CONTAINERS.uploads, name: e.name, etag: e.etag };
      const claimOpts = {
        instanceId: deps.instanceId,
        now: deps.now,
        ...(opts.claimTimeoutMs !== undefined ? { timeoutMs: opts.claimTimeoutMs } : {}),
      };
      if ((await liveClaim(store, claim, claimOpts)) !== undefined) {
        report.uploadsClaimed++;
        continue;
      }
      const blob = await store.get(CONTAINERS.uploads, e.name);
      if (blob === undefined) continue;
      const r = await steps.preprocess({ name: e.name, data: blob.data }, blob.etag, deps, log, opts.claimTimeoutMs);
      if (r.status === 'claimed-elsewhere') {
        report.uploadsClaimed++;
        continue;
      }
      if (r.status === 'preprocessed') preprocessed.add(e.name);
      report.uploadsRedriven++;
    } catch (err) {
      report.errors++;
      log.error(`sweep: preprocess ${e.name}: ${String(err)}`);
    }
  }

  if ((await deps.models.current()) !== undefined) {
    for (const name of preprocessed) {
      if (budget <= 0) break;
      if (predicted.has(name)) continue;
      budget--;
      try {
        const npy = await store.get(CONTAINERS.preprocessed, `${name}.npy`);
        if (npy === undefined) continue;
        const r = await steps.infer(
          { name, data: npy.data, metadata: npy.metadata },
          npy.etag,
          deps,
          log,
          opts.claimTimeoutMs,
        );
        if (r.status === 'scored' || r.status === 'already-done') report.imagesScored++;
        else if (r.status === 'claimed-elsewhere') report.imagesClaimed++;
        else report.stillWaiting++;
      } catch (err) {
        report.errors++;
        log.error(`sweep: infer ${name}: ${String(err)}`);
      }
    }
  } else {
    for (const name of preprocessed) if (!predicted.has(name)) report.stillWaiting++;
  }
  // Claims older than the timeout are abandoned: their work was re-driven above or is done.
  try {
    report.claimsRemoved = await removeClaims(store, {
      olderThan: new Date(deps.now().getTime() - (opts.claimTimeoutMs ?? CLAIM_TIMEOUT_MS)),
    });
  } catch (err) {
    report.errors++;
    log.error(`sweep: removing abandoned claims: ${String(err)}`);
  }
  // Every 30 seconds by default: a line only when the sweep did something (the report says the rest).
  if (report.uploadsRedriven + report.imagesScored + report.errors > 0)
    log.info(
      `sweep: ${report.uploadsRedriven} uploads re-driven, ${report.imagesScored} images scored, ${report.stillWaiting} waiting, ${report.errors} errors`,
    );
  return report;
}
