/**
 * retrain: starts a retraining run (timer %RETRAIN_SCHEDULE%, POST /api/retrain, `triage retrain`),
 * and reports runs (GET /api/runs, GET /api/runs/{id}). See src/jobs/start.ts for what starting
 * involves; the trainer itself runs elsewhere (GPU Container Apps job, or a local child process).
 */
import type { Deps } from '../composition';
import type { Log } from '../util/log';
import { Launcher, launcherFor } from '../jobs/launchers';
import { StartRunResult, startRun } from '../jobs/start';
import { reconcileRun } from '../jobs/liveness';
import { RunStatus, checkRunId, isFinished, listRuns, readStatus, RunError } from '../jobs/runs';

export interface RetrainRequest {
  /** timer, http:<user>, cli:<user>. */
  requestedBy: string;
  force?: boolean;
}

export interface RetrainHandlerOptions {
  /** Default: launcherFor(deps.config) (the Azure job when TRAINER_JOB_NAME is set, else a local child process). */
  launcher?: Launcher;
  staleAfterMs?: number;
}

export async function handleRetrain(
  req: RetrainRequest,
  deps: Deps,
  log: Log,
  opts: RetrainHandlerOptions = {},
): Promise<StartRunResult> {
  const launcher = opts.launcher ?? launcherFor(deps.config, deps.store, { log });
  const r = await startRun(deps, {
    requestedBy: req.requestedBy,
    force: req.force === true,
    launcher,
    log,
    ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
  });
  if (!r.started) log.info(`retrain (${req.requestedBy}): no run started: ${r.reason}: ${r.message}`);
  return r;
}

export interface HttpResult {
  status: 200 | 202 | 400 | 404 | 409 | 422 | 502;
  body: Record<string, unknown>;
}

/** POST /api/retrain with an optional body {"force": true}. */
export async function handleRetrainHttp(
  body: string,
  by: string,
  deps: Deps,
  log: Log,
  opts: RetrainHandlerOptions = {},
): Promise<HttpResult> {
  let force = false;
  if (body.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (err) {
      return {
        status: 400,
        body: { error: `The body is not valid JSON: ${err instanceof Error ? err.message : String(err)}` },
      };
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return { status: 400, body: { error: 'The body must be a JSON object such as {"force": true}, or empty.' } };
    const f = (parsed as Record<string, unknown>).force;
    if (f !== undefined && typeof f !== 'boolean')
      return { status: 400, body: { error: '"force" must be true or false.' } };
    const unknown = Object.keys(parsed).filter((k) => k !== 'force');
    if (unknown.length > 0)
      return {
        status: 400,
        body: {
          error: `Unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}; only "force" is accepted.`,
        },
      };
    force = f === true;
  }
  const r = await handleRetrain({ requestedBy: `http:${by}`, force }, deps, log, opts);
  if (r.started)
    return {
      status: 202,
      body: {
        runId: r.runId,
        state: r.status.state,
        labels: r.manifest.labels.total,
        newLabels: r.manifest.labels.newSinceBaseModel,
        status: `/api/runs/${r.runId}`,
      },
    };
  switch (r.reason) {
    case 'too-few-new-labels':
      return {
        status: 422,
        body: {
          error: `${r.message}; send {"force": true} to train anyway.`,
          newLabels: r.newLabels,
          required: r.required,
        },
      };
    case 'run-in-progress':
      return { status: 409, body: { error: r.message, activeRunId: r.activeRunId } };
    case 'busy':
      return { status: 409, body: { error: r.message } };
    case 'nothing-to-train':
      return { status: 422, body: { error: r.message } };
    case 'launch-failed':
      return {
        status: 502,
        body: { error: `Run ${r.runId} could not start its trainer: ${r.message}`, runId: r.runId },
      };
  }
}

/**
 * GET /api/runs/{id}: the run's status. A run still queued or running is checked with its launcher
 * first (is the job execution or process still alive?); the answer is in `trainer`, and a run whose
 * trainer ended without an outcome comes back failed (and is recorded so).
 */
export async function handleGetRun(
  runId: string,
  deps: Deps,
  log: Log,
  opts: Pick<RetrainHandlerOptions, 'launcher'> = {},
): Promise<HttpResult> {
  try {
    checkRunId(runId);
  } catch (err) {
    return { status: 400, body: { error: err instanceof RunError ? err.message : String(err) } };
  }
  const s = await readStatus(deps.store, runId);
  if (s === undefined) return { status: 404, body: { error: `There is no run ${JSON.stringify(runId)}.` } };
  if (isFinished(s.value.state)) return { status: 200, body: s.value as unknown as Record<string, unknown> };
  const checked = await reconcileRun(
    deps.store,
    s.value,
    opts.launcher ?? launcherFor(deps.config, deps.store, { log }),
    { now: deps.now, log },
  );
  return {
    status: 200,
    body: { ...checked.status, ...(checked.trainer !== undefined ? { trainer: checked.trainer } : {}) },
  };
}

export async function handleListRuns(limit: string | null, deps: Deps): Promise<HttpResult> {
  const n = limit === null || limit === '' ? 20 : Number(limit);
  if (!Number.isInteger(n) || n < 1 || n > 500)
    return { status: 400, body: { error: 'limit must be an integer from 1 to 500.' } };
  const runs: RunStatus[] = await listRuns(deps.store, { limit: n });
  return { status: 200, body: { runs } };
}
