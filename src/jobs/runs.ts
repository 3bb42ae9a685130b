/**
 * Retraining runs in Blob Storage, one folder per run:
 *
 *   runs/{runId}/manifest.json   what the run trains on (src/jobs/manifest.ts), written once
 *   runs/{runId}/status.json     queued -> running -> succeeded (promoted | not-promoted) | failed
 *   runs/{runId}/report.json     metrics of candidate and promoted model, gate decision, timings
 *   runs/{runId}/*.svg           plots of the candidate on the held-out set
 *   runs/{runId}/trainer.log     the local trainer's output (local launcher only)
 *   runs/retrain.lock            leased while a run is being started (one at a time)
 *   runs/active.json             the run started last
 *
 * Status changes are ETag-conditional read-modify-writes, and only move forward: a finished run
 * (succeeded or failed) never changes again.
 */
import { randomBytes } from 'node:crypto';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';

export type RunState = 'queued' | 'running' | 'succeeded' | 'failed';

/** How a run's trainer was started, as its status records it (what a launcher's check() is asked about). */
export interface LaunchRecord {
  /** azure, local or self. */
  kind: string;
  /** Azure: the Container Apps job execution. */
  execution?: string;
  /** Local: the child's process id... */
  pid?: number;
  /** ...on this host (a pid means nothing elsewhere). */
  host?: string;
}
export type RunOutcome = 'promoted' | 'not-promoted';

export interface RunStatus {
  runId: string;
  state: RunState;
  /** Set when state is succeeded. */
  outcome?: RunOutcome;
  /** Why it was or was not promoted (succeeded), or what went wrong (failed). */
  reason?: string;
  /** Failed runs: the error message. */
  error?: string;
  createdAt: string;
  updatedAt: string;
  /** Who asked for it: timer, http:<user>, cli:<user>, job (started by hand in Azure). */
  requestedBy: string;
  /** How the trainer was started: azure (with the execution name) or local (with the pid and host). */
  launcher?: LaunchRecord;
  /** The candidate model version, once saved. */
  candidateVersion?: string;
  /** What the trainer is doing (updated every epoch: a heartbeat). */
  progress?: { phase: string; epoch?: number; epochs?: number };
  /** Succeeded runs: which gate judged (`gate`: accuracy or screening) and its figures for both models (accuracy and selective error, or AUROC, sensitivity and specificity at each threshold). */
  summary?: Record<string, number | string | null>;
  /** How many times a trainer started on this run. */
  attempts: number;
  /** Every state change, oldest first. */
  history: { state: RunState; at: string; note?: string }[];
}

export class RunError extends Error {
  constructor(
    readonly code: 'no-such-run' | 'finished' | 'conflict' | 'bad-manifest',
    message: string,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

const RUN_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A sortable run id: UTC timestamp plus a random suffix, e.g. 20250101T020000Z-3f9a1c. */
export function newRunId(now: Date = new Date()): string {
  return `${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

export function checkRunId(runId: string): string {
  if (!RUN_ID_RE.test(runId) || runId.endsWith('.json') || runId.endsWith('.lock')) {
    throw new RunError('no-such-run', `invalid run id ${JSON.stringify(runId)}: use letters, digits, '.', '_' and '-'`);
  }
  return runId;
}

export function isFinished(state: RunState): boolean {
  return state === 'succeeded' || state === 'failed';
}

export async function readStatus(
  store: BlobStore,
  runId: string,
): Promise<{ value: RunStatus; etag: string } | undefined> {
  return store.getJson<RunStatus>(CONTAINERS.runs, paths.runStatus(checkRunId(runId)));
}

/** Writes the first status of a run (queued). Fails if the run already has one. */
export async function createStatus(
  store: BlobStore,
  s: Omit<RunStatus, 'state' | 'history' | 'updatedAt' | 'attempts'>,
): Promise<RunStatus> {
  const status: RunStatus = {
    ...s,
    state: 'queued',
    updatedAt: s.createdAt,
    attempts: 0,
    history: [{ state: 'queued', at: s.createdAt }],
  };
  const r = await store.putJson(CONTAINERS.runs, paths.runStatus(checkRunId(s.runId)), status, { ifNoneExists: true });
  if (!r.written) throw new RunError('conflict', `run ${s.runId} already has a status`);
  return status;
}

/**
 * Applies `change` to the run's status and writes it if the blob did not change meanwhile (retried
 * on a race). `change` returns undefined to leave the status as it is. A finished run is never
 * changed: RunError('finished').
 */
export async function updateStatus(
  store: BlobStore,
  runId: string,
  change: (s: RunStatus) => Partial<RunStatus> | undefined,
  now: () => Date = () => new Date(),
): Promise<RunStatus> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const cur = await readStatus(store, runId);
    if (cur === undefined)
      throw new RunError('no-such-run', `run ${runId} has no ${CONTAINERS.runs}/${paths.runStatus(runId)}`);
    if (isFinished(cur.value.state)) {
      throw new RunError(
        'finished',
        `run ${runId} already ${cur.value.state}${cur.value.outcome ? ` (${cur.value.outcome})` : ''}; its status does not change any more`,
      );
    }
    const patch = change(cur.value);
    if (patch === undefined) return cur.value;
    const at = now().toISOString();
    const next: RunStatus = { ...cur.value, ...patch, updatedAt: at };
    if (patch.state !== undefined && patch.state !== cur.value.state) {
      next.history = [
        ...cur.value.history,
        { state: patch.state, at, ...(patch.reason !== undefined ? { note: patch.reason } : {}) },
      ];
    }
    const w = await store.putJson(CONTAINERS.runs, paths.runStatus(runId), next, { ifMatch: cur.etag });
    if (w.written) return next;
  }
  throw new RunError('conflict', `the status of run ${runId} kept changing under concurrent writers`);
}

/** Marks a run failed unless it already finished; returns false when it had. Never throws for a finished run. */
export async function markFailed(store: BlobStore, runId: string, error: string, now?: () => Date): Promise<boolean> {
  try {
    await updateStatus(store, runId, () => ({ state: 'failed', error, reason: error }), now);
    return true;
  } catch (err) {
    if (err instanceof RunError && err.code === 'finished') return false;
    throw err;
  }
}

/** Every run with a status, newest first (run ids sort by creation time). */
export async function listRuns(store: BlobStore, opts: { limit?: number } = {}): Promise<RunStatus[]> {
  const ids: string[] = [];
  for await (const e of store.list(CONTAINERS.runs)) {
    const m = /^([^/]+)\/status\.json$/.exec(e.name);
    if (m?.[1] !== undefined) ids.push(m[1]);
  }
  ids.sort().reverse();
  const out: RunStatus[] = [];
  for (const id of ids.slice(0, opts.limit ?? ids.length)) {
    const s = await readStatus(store, id);
    if (s !== undefined) out.push(s.value);
  }
  return out;
}
