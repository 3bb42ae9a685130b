/**
 * `triage retrain`, `triage train-job` and `triage runs list|show`. src/cli/main.ts calls
 * registerRetrainCommands(program, { getStore, getDeps }).
 *
 *   triage retrain [--force] [--no-wait]   start a run now (as the timer would; --force skips the new-label minimum)
 *   triage train-job [--run <id>]          the trainer (the GPU image's entrypoint); RUN_ID from the
 *                                          environment when --run is absent; neither: plan a new run
 *                                          (forced) and train it here
 *   triage runs list [--limit N] [--json]  recent runs, newest first
 *   triage runs show <id> [--json]         status, outcome and the report's figures; a run still
 *                                          queued or running is checked with its launcher first
 */
import type { Command } from 'commander';
import type { Deps } from '../../composition';
import type { BlobStore } from '../../storage/blobStore';
import { CONTAINERS, paths } from '../../storage/layout';
import { consoleLog, Log } from '../../util/log';
import { handleRetrain } from '../../handlers/retrain';
import { Launcher, launcherFor, TrainerState } from '../../jobs/launchers';
import { startRun } from '../../jobs/start';
import { reconcileRun } from '../../jobs/liveness';
import { checkRunId, isFinished, listRuns, readStatus, RunStatus } from '../../jobs/runs';
import { UsageError, whoami } from '../common';

export interface RetrainCommandDeps {
  getStore: () => BlobStore;
  getDeps: () => Deps;
  /** Result lines. Default console.log. */
  print?: (line: string) => void;
  log?: Log;
  /** Default launcherFor(config). */
  launcher?: (deps: Deps) => Launcher;
  /** Environment to read RUN_ID from. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

function pct(x: unknown): string {
  return typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : '-';
}

export function describeStatus(s: RunStatus): string {
  const progress =
    !isFinished(s.state) && s.progress
      ? ` (${s.progress.phase}${s.progress.epoch !== undefined ? ` epoch ${s.progress.epoch}/${s.progress.epochs ?? '?'}` : ''})`
      : '';
  const outcome = s.state === 'succeeded' ? ` ${s.outcome ?? ''}` : '';
  return `${s.runId}  ${(s.state + outcome).padEnd(24)} ${s.candidateVersion ?? '-'}  ${s.requestedBy}  ${s.updatedAt}${progress}`;
}

/** The gate's figures of a finished run (its status summary): which gate judged, and the comparison. */
export function describeSummary(m: Record<string, number | string | null>): string[] {
  const fixed = (x: unknown) => (typeof x === 'number' ? x.toFixed(4) : '-');
  if (m.gate === 'screening') {
    return [
      `gate: screening (${String(m.positiveClass)} positive): AUROC and sensitivity at each model's own threshold, no worse than the promoted model's`,
      `held-out (${String(m.heldOutImages)} images, ${String(m.heldOutPositives)} ${String(m.positiveClass)}): AUROC ${fixed(m.candidateAuroc)} vs promoted ${fixed(m.promotedAuroc)}; sensitivity ${pct(m.candidateSensitivity)} vs ${pct(m.promotedSensitivity)} at thresholds ${fixed(m.candidateThreshold)} / ${fixed(m.promotedThreshold)}; negatives cleared (specificity) ${pct(m.candidateSpecificity)} vs ${pct(m.promotedSpecificity)}; accuracy ${pct(m.candidateAccuracy)} vs ${pct(m.promotedAccuracy)}`,
    ];
  }
  return [
    "gate: accuracy (held-out accuracy and selective error, no worse than the promoted model's)",
    `held-out (${String(m.heldOutImages)} images): accuracy ${pct(m.candidateAccuracy)} vs promoted ${pct(m.promotedAccuracy)}; selective error ${pct(m.candidateSelectiveError)} vs ${pct(m.promotedSelectiveErrorAtSameCoverage)} at coverage ${pct(m.coverage)}`,
  ];
}

/** Resolves the run id of `train-job`: --run, else RUN_ID, else undefined (plan one here). */
export function trainJobRunId(opt: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = opt ?? env.RUN_ID;
  if (v === undefined || v.trim() === '') return undefined;
  return checkRunId(v.trim());
}

export function registerRetrainCommands(program: Command, deps: RetrainCommandDeps): Command {
  const print = deps.print ?? ((l: string) => console.log(l));
  const log = deps.log ?? consoleLog;
  const pickLauncher = deps.launcher ?? ((d: Deps) => launcherFor(d.config, d.store, { log }));

  program
    .command('retrain')
    .description(
      'Start a retraining run now, as the timer does (one run at a time; needs RETRAIN_MIN_NEW_LABELS new labels unless --force).',
    )
    .option('--force', 'start even with fewer new labels than RETRAIN_MIN_NEW_LABELS')
    .option(
      '--no-wait',
      'return once the trainer started (a local trainer then keeps running in the background only while this process lives)',
    )
    .action(async (o: { force?: boolean; wait: boolean }) => {
      const d = deps.getDeps();
      const launcher = pickLauncher(d);
      const r = await handleRetrain({ requestedBy: `cli:${whoami()}`, force: o.force === true }, d, log, { launcher });
      if (!r.started) {
        if (r.reason === 'too-few-new-labels') throw new UsageError(`${r.message}; use --force to train anyway`);
        throw new UsageError(r.message);
      }
      print(
        `Started run ${r.runId} (${r.launch.kind}${r.launch.execution ? ` execution ${r.launch.execution}` : ''}): ${r.manifest.labels.total} labels (${r.manifest.labels.newSinceBaseModel} new), base data ${r.manifest.baseData.description}.`,
      );
      if (r.launch.done !== undefined && o.wait) {
        print('Training locally; waiting for it to finish (Ctrl-C stops it).');
        await r.launch.done;
        const s = await readStatus(d.store, r.runId);
        if (s !== undefined) print(describeStatus(s.value) + (s.value.reason ? `\n  ${s.value.reason}` : ''));
        if (s?.value.state !== 'succeeded') process.exitCode = 1;
      } else {
        print(`Follow it with: triage runs show ${r.runId}`);
      }
    });

  program
    .command('train-job')
    .description(
      "Run the trainer of a queued run (the GPU job's entrypoint): train, evaluate against the promoted model on the held-out set, promote if no worse.",
    )
    .option(
      '--run <id>',
      'run id (default: the RUN_ID environment variable; neither: plan a new run, forced, and train it here)',
    )
    .option('--no-plots', 'skip the SVG plots')
    .action(async (o: { run?: string; plots: boolean }) => {
      const d = deps.getDeps();
      let runId = trainJobRunId(o.run, deps.env ?? process.env);
      if (runId === undefined) {
        const self: Launcher = { kind: 'self', launch: async () => ({ kind: 'self' }) };
        const r = await startRun(d, { requestedBy: `job:${whoami()}`, force: true, launcher: self, log });
        if (!r.started)
          throw new UsageError(`no run id given (--run or RUN_ID) and no run could be planned: ${r.message}`);
        runId = r.runId;
        print(`Planned run ${runId}: ${r.manifest.labels.total} labels, base data ${r.manifest.baseData.description}.`);
      }
      // Loaded here: only the trainer pays for TensorFlow.js.
      const { runTrainJob } = await import('../../jobs/trainer');
      const s = await runTrainJob(runId, { config: d.config, store: d.store, log, now: d.now }, { plots: o.plots });
      print(describeStatus(s));
      if (s.reason !== undefined) print(`  ${s.reason}`);
    });

  const runs = program.command('runs').description('Retraining runs: status, outcome, report.');
  runs
    .command('list')
    .description('Recent runs, newest first.')
    .option('--limit <n>', 'how many', '20')
    .option('--json', 'print JSON')
    .action(async (o: { limit: string; json?: boolean }) => {
      const n = Number(o.limit);
      if (!Number.isInteger(n) || n < 1 || n > 10_000)
        throw new UsageError(`--limit must be an integer from 1 to 10000, got ${o.limit}`);
      const list = await listRuns(deps.getStore(), { limit: n });
      if (o.json === true) return void print(JSON.stringify(list, null, 2));
      if (list.length === 0) return void print('No runs yet (start one: triage retrain).');
      for (const s of list) print(describeStatus(s));
    });
  runs
    .command('show')
    .description('One run: status, why it was or was not promoted, held-out figures, timings.')
    .argument('<id>')
    .option('--json', 'print status and report as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const store = deps.getStore();
      const s = await readStatus(store, checkRunId(id));
      if (s === undefined) throw new UsageError(`there is no run ${JSON.stringify(id)} (see triage runs list)`);
      // A run still queued or running: is its trainer alive? (A dead one is marked failed here.)
      let st = s.value;
      let trainer: TrainerState | undefined;
      if (!isFinished(st.state)) {
        const d = deps.getDeps();
        ({ status: st, trainer } = await reconcileRun(store, st, pickLauncher(d), { now: d.now, log }));
      }
      const report = (await store.getJson<Record<string, unknown>>(CONTAINERS.runs, paths.runReport(id)))?.value;
      const manifest = (
        await store.getJson<{
          labels: { total: number; newSinceBaseModel: number };
          baseData: { description: string };
          baseModel: { version: string } | null;
        }>(CONTAINERS.runs, paths.runManifest(id))
      )?.value;
      if (o.json === true)
        return void print(
          JSON.stringify(
            { status: st, ...(trainer !== undefined ? { trainer } : {}), report: report ?? null },
            null,
            2,
          ),
        );
      print(`run ${st.runId}: ${st.state}${st.outcome ? ` (${st.outcome})` : ''}`);
      print(
        `  requested by ${st.requestedBy} at ${st.createdAt}; launcher ${st.launcher?.kind ?? '-'}${st.launcher?.execution ? ` execution ${st.launcher.execution}` : ''}${st.launcher?.pid ? ` pid ${st.launcher.pid}` : ''}; attempts ${st.attempts}`,
      );
      if (manifest)
        print(
          `  data: ${manifest.labels.total} labels (${manifest.labels.newSinceBaseModel} new since ${manifest.baseModel?.version ?? 'the start'}), base ${manifest.baseData.description}`,
        );
      if (st.progress && !isFinished(st.state))
        print(
          `  now: ${st.progress.phase}${st.progress.epoch !== undefined ? ` epoch ${st.progress.epoch}/${st.progress.epochs ?? '?'}` : ''}`,
        );
      if (trainer !== undefined) print(`  trainer: ${trainer.state}: ${trainer.detail}`);
      if (st.candidateVersion) print(`  candidate: ${st.candidateVersion}`);
      if (st.summary) for (const l of describeSummary(st.summary)) print(`  ${l}`);
      if (st.reason) print(`  ${st.state === 'failed' ? 'error' : 'reason'}: ${st.reason}`);
      const timings = report?.timings as Record<string, number> | undefined;
      if (timings)
        print(
          `  timings: ${Object.entries(timings)
            .map(([k, v]) => `${k.replace(/Ms$/, '')} ${(v / 1000).toFixed(1)} s`)
            .join(', ')}`,
        );
      const plots = report?.plots as string[] | undefined;
      if (plots && plots.length > 0) print(`  plots: ${plots.join(', ')}`);
      for (const h of st.history) print(`  ${h.at}  ${h.state}${h.note ? `: ${h.note}` : ''}`);
    });

  return program;
}
