/**
 * Is a queued or running run's trainer still alive? Its status says "running" until the trainer
 * writes otherwise, so a trainer that dies without a word (out of memory, image pull failure, node
 * loss, a killed process) would leave the run "running", and new runs refused, until startRun's
 * stale-run limit. reconcileRun asks the launcher that started it (Launcher.check: the Container
 * Apps job execution, or the local child process); when the trainer has ended and the run still
 * has no outcome, the run is marked failed with what was found, which is all a new start waits on
 * (runs/active.json only points at the run; the start lease is held only while starting).
 *
 * Called by startRun (the retrain timer, POST /api/retrain, `triage retrain`) for the run started
 * last, and by GET /api/runs/{id} and `triage runs show` for the run shown.
 */
import type { BlobStore } from '../storage/blobStore';
import type { Log } from '../util/log';
import type { Launcher, TrainerState } from './launchers';
import { isFinished, markFailed, readStatus, RunStatus } from './runs';

export interface Reconciled {
  /** The run's status after the check (failed if it was marked so, or whatever a racing writer wrote). */
  status: RunStatus;
  /** What the launcher said; undefined when it was not asked (finished run, or another kind of launcher). */
  trainer?: TrainerState;
  /** True when this call marked the run failed. */
  markedFailed: boolean;
}

export async function reconcileRun(
  store: BlobStore,
  status: RunStatus,
  launcher: Launcher,
  opts: { now?: () => Date; log?: Log } = {},
): Promise<Reconciled> {
  const launched = status.launcher;
  if (
    isFinished(status.state) ||
    launched === undefined ||
    launcher.check === undefined ||
    launched.kind !== launcher.kind
  ) {
    return { status, markedFailed: false };
  }
  let trainer: TrainerState;
  try {
    trainer = await launcher.check(status.runId, launched);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    opts.log?.warn(`run ${status.runId}: could not find out whether its trainer still runs: ${message}`);
    return { status, trainer: { state: 'unknown', detail: `could not find out: ${message}` }, markedFailed: false };
  }
  if (trainer.state !== 'ended') return { status, trainer, markedFailed: false };

  const reason = `the trainer ended without recording an outcome: ${trainer.detail}, while the run was still ${status.state}`;
  // Conditional on the run not having finished meanwhile (a trainer that just wrote its outcome wins).
  const marked = await markFailed(store, status.runId, reason, opts.now);
  if (marked) opts.log?.warn(`run ${status.runId} failed: ${reason}`);
  const now = (await readStatus(store, status.runId))?.value ?? status;
  return { status: now, trainer, markedFailed: marked };
}
