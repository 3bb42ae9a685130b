/**
 * Starting a retraining run (the timer, POST /api/retrain and `triage retrain` all come here):
 *
 *  1. take the lease on runs/retrain.lock (renewed while held): one starter at a time, across
 *     instances; a second starter gets "busy" at once instead of waiting;
 *  2. refuse while the run started last (runs/active.json) is still queued or running. Its launcher
 *     is asked first whether the trainer still runs (src/jobs/liveness.ts): one that ended without
 *     an outcome (a failed job execution, a vanished process) gets the run marked failed, and this
 *     start goes on. A run whose trainer cannot be checked and that has not moved for
 *     `staleAfterMs` is marked failed as lost;
 *  3. count labels not in the promoted model's snapshot (nor in that of a later run whose candidate
 *     was not promoted: the same data is not retrained on every tick); fewer than
 *     RETRAIN_MIN_NEW_LABELS: no run (unless forced);
 *  4. write runs/{runId}/manifest.json, runs/{runId}/status.json (queued) and runs/active.json;
 *  5. release the lease and start the trainer with the launcher. A launcher that fails marks the
 *     run failed.
 */
import type { Config } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { Log } from '../util/log';
import {
  baseDataClasses,
  buildManifest,
  listLabelBlobs,
  newLabels,
  promotedSnapshot,
  readLabelItems,
  readManifest,
  RunManifest,
} from './manifest';
import { RunStatus, createStatus, isFinished, markFailed, newRunId, readStatus, updateStatus, RunError } from './runs';
import type { LaunchInfo, Launcher } from './launchers';
import { reconcileRun } from './liveness';

export interface StartRunDeps {
  config: Config;
  store: BlobStore;
  now: () => Date;
}

export interface StartRunOptions {
  /** Skip the minimum of new labels. Default false. */
  force?: boolean;
  /** Recorded in the manifest and the status: timer, http:<user>, cli:<user>, job. */
  requestedBy: string;
  launcher: Launcher;
  log?: Log;
  /** A queued or running run whose status has not changed for this long is presumed lost. Default 3 hours. */
  staleAfterMs?: number;
  /** Lease duration on runs/retrain.lock in seconds (15..60); renewed at a third of it. Default 30. */
  leaseSeconds?: number;
}

export type StartRunResult =
  | { started: true; runId: string; manifest: RunManifest; status: RunStatus; launch: LaunchInfo }
  | { started: false; reason: 'busy'; message: string }
  | { started: false; reason: 'run-in-progress'; message: string; activeRunId: string }
  | {
      started: false;
      reason: 'too-few-new-labels';
      message: string;
      newLabels: number;
      required: number;
      promotedVersion: string | null;
    }
  | { started: false; reason: 'nothing-to-train'; message: string }
  | { started: false; reason: 'launch-failed'; message: string; runId: string };

interface ActiveRun {
  runId: string;
  createdAt: string;
}

/** Runs `fn` while holding a lease on the blob; undefined when another holder has it. */
export async function withLease<T>(
  store: BlobStore,
  container: string,
  blob: string,
  seconds: number,
  fn: () => Promise<T>,
): Promise<{ held: true; value: T } | { held: false }> {
  const leaseId = await store.acquireLease(container, blob, seconds);
  if (leaseId === undefined) return { held: false };
  let lost = false;
  const timer = setInterval(
    () => {
      store.renewLease(container, blob, leaseId).then(
        (ok) => {
          if (!ok) lost = true;
        },
        () => undefined, // a failed renewal is retried on the next tick; the lease outlives two misses
      );
    },
    Math.max(1000, (seconds * 1000) / 3),
  );
  timer.unref();
  try {
    const value = await fn();
    if (lost) throw new RunError('conflict', `the lease on ${container}/${blob} was lost while it was held`);
    return { held: true, value };
  } finally {
    clearInterval(timer);
    await store.releaseLease(container, blob, leaseId);
  }
}

export async function startRun(deps: StartRunDeps, opts: StartRunOptions): Promise<StartRunResult> {
  const { store, config, now } = deps;
  const log = opts.log;
  const staleAfterMs = opts.staleAfterMs ?? 3 * 3600_000;
  const planned = await withLease(
    store,
    CONTAINERS.runs,
    paths.runLock(),
    opts.leaseSeconds ?? 30,
    async (): Promise<StartRunResult> => {
      const active = await store.getJson<ActiveRun>(CONTAINERS.runs, paths.runActive());
      // A run judged after the promoted model's (its candidate not promoted) moves the baseline: the
      // same data is not trained on again and again.
      let judged: RunManifest | undefined;
      if (active !== undefined) {
        let st = (await readStatus(store, active.value.runId))?.value;
        let trainer = '';
        if (st !== undefined && !isFinished(st.state)) {
          const checked = await reconcileRun(store, st, opts.launcher, { now, ...(log !== undefined ? { log } : {}) });
          st = checked.status;
          if (checked.trainer !== undefined) trainer = `; ${checked.trainer.detail}`;
        }
        if (st?.state === 'succeeded' && st.outcome === 'not-promoted')
          judged = await readManifest(store, active.value.runId).catch(() => undefined);
        if (st !== undefined && !isFinished(st.state)) {
          const idleMs = now().getTime() - new Date(st.updatedAt).getTime();
          if (idleMs < staleAfterMs) {
            return {
              started: false,
              reason: 'run-in-progress',
              activeRunId: st.runId,
              message: `run ${st.runId} is still ${st.state} (since ${st.updatedAt})${trainer}; one run at a time`,
            };
          }
          await markFailed(
            store,
            st.runId,
            `presumed lost: still ${st.state} with no progress for ${Math.round(idleMs / 60_000)} minutes${trainer}`,
            now,
          );
          log?.warn(`retrain: run ${st.runId} presumed lost (no progress for ${Math.round(idleMs / 60_000)} minutes)`);
        }
      }

      const [labels, snapshot] = await Promise.all([listLabelBlobs(store), promotedSnapshot(store)]);
      const judgedItems = new Map((judged?.labels.items ?? []).map((i) => [i.name, i]));
      const fresh = newLabels(labels, snapshot).filter(
        (l) => judged === undefined || judgedItems.get(l.name)?.labelEtag !== l.etag,
      );
      const promotedVersion = snapshot.current?.version ?? null;
      if (opts.force !== true && fresh.length < config.retrainMinNewLabels) {
        const since =
          judged !== undefined
            ? `run ${judged.runId} (not promoted)`
            : promotedVersion === null
              ? 'the start'
              : `model ${promotedVersion}`;
        return {
          started: false,
          reason: 'too-few-new-labels',
          newLabels: fresh.length,
          required: config.retrainMinNewLabels,
          promotedVersion,
          message: `${fresh.length} new label${fresh.length === 1 ? '' : 's'} since ${since}; RETRAIN_MIN_NEW_LABELS is ${config.retrainMinNewLabels}`,
        };
      }
      const { items, skipped } = await readLabelItems(store, labels, new Map([...judgedItems, ...snapshot.items]));
      if (items.length === 0 && config.retrainBaseData.name === 'none') {
        return {
          started: false,
          reason: 'nothing-to-train',
          message: 'there are no usable labels and RETRAIN_BASE_DATA is none: nothing to train on',
        };
      }

      const created = now();
      const runId = newRunId(created);
      const baseClasses = await baseDataClasses(config.retrainBaseData);
      const manifest = buildManifest({
        runId,
        createdAt: created,
        requestedBy: opts.requestedBy,
        force: opts.force === true,
        config,
        snapshot,
        items,
        skipped,
        newSinceBaseModel: fresh.length,
        baseClasses,
      });
      const w = await store.putJson(CONTAINERS.runs, paths.runManifest(runId), manifest, { ifNoneExists: true });
      if (!w.written) throw new RunError('conflict', `run ${runId} already has a manifest`);
      const status = await createStatus(store, {
        runId,
        createdAt: created.toISOString(),
        requestedBy: opts.requestedBy,
        launcher: { kind: opts.launcher.kind },
      });
      await store.putJson(CONTAINERS.runs, paths.runActive(), {
        runId,
        createdAt: created.toISOString(),
      } satisfies ActiveRun);
      return { started: true, runId, manifest, status, launch: { kind: opts.launcher.kind } };
    },
  );
  if (!planned.held) return { started: false, reason: 'busy', message: 'another instance is starting a run right now' };
  const r = planned.value;
  if (!r.started) return r;

  try {
    const launch = await opts.launcher.launch(r.runId);
    log?.info(
      `retrain: run ${r.runId} started (${launch.kind}${launch.execution ? ` execution ${launch.execution}` : ''}${launch.pid ? ` pid ${launch.pid}` : ''}); ${r.manifest.labels.total} labels, ${r.manifest.labels.newSinceBaseModel} new`,
    );
    const launcher = {
      kind: launch.kind,
      ...(launch.execution ? { execution: launch.execution } : {}),
      ...(launch.pid ? { pid: launch.pid } : {}),
      ...(launch.host ? { host: launch.host } : {}),
    };
    const status = await updateStatus(store, r.runId, () => ({ launcher }), now).catch((err: unknown) => {
      // The trainer may have finished already (fast local runs): its status stands.
      if (err instanceof RunError && err.code === 'finished') return r.status;
      throw err;
    });
    return { ...r, status, launch };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    await markFailed(store, r.runId, `could not start the trainer: ${message}`, now);
    log?.error(`retrain: run ${r.runId}: could not start the trainer: ${message}`);
    return { started: false, reason: 'launch-failed', runId: r.runId, message };
  }
}
