#!/usr/bin/env node
/**
 * `triage`: the command line of the pipeline. Talks to the storage account of the settings
 * (environment, then local.settings.json); with UseDevelopmentStorage=true, to the Azurite of
 * the embedded runtime started by `npm start`.
 */
import { Command, CommanderError } from 'commander';
import cliProgress from 'cli-progress';
import { ConfigError, loadConfig, loadImagingConfig } from '../config';
import { BlobStore } from '../storage/blobStore';
import { collectStatus } from '../handlers/status';
import { mergedSettings, resolveLocalStorage } from '../local/settings';
import { planUpload, uploadAll, UsageError } from './upload';
import { writeSamples } from './samples';
import os from 'node:os';
import { buildDeps, Deps } from '../composition';
import { handleLabel, handleWorklist } from '../handlers/review';
import { handleSweep } from '../handlers/sweep';
import { consoleLog } from '../handlers/types';
import { listVersions, promote, readCurrent, RegistryError, rollback } from '../registry/registry';
import { registerMlCommands } from '../ml/cli';
import { registerRetrainCommands } from '../jobs/cli';

export function depsFromSettings(): Deps {
  return buildDeps(loadConfig(resolveLocalStorage(mergedSettings())), { instanceId: `cli-${os.hostname()}` });
}

export function buildProgram(getDeps: () => Deps = depsFromSettings): Command {
  let deps: Deps | undefined;
  const lazyDeps = () => (deps ??= getDeps());
  const getStore = (): BlobStore => lazyDeps().store;
  const program = new Command('triage').description('Image triage pipeline: upload images, see what happened to them.').exitOverride();

  program
    .command('upload')
    .description('Upload a file, or every file under a folder, to uploads/ (virtual folders keep the relative path).')
    .argument('<file-or-folder>')
    .option('--prefix <prefix>', 'virtual folder to put the uploads under, e.g. batch-7/', '')
    .option('--concurrency <n>', 'uploads at once', '8')
    .action(async (target: string, opts: { prefix: string; concurrency: string }) => {
      const concurrency = Number(opts.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError(`--concurrency must be an integer from 1 to 64, got ${opts.concurrency}`);
      const items = planUpload(target, opts.prefix);
      const store = getStore();
      await store.ensureContainers();
      const bar = new cliProgress.SingleBar(
        { format: 'upload [{bar}] {value}/{total} files | {failed} failed | {eta_formatted} left', noTTYOutput: true, notTTYSchedule: 2000, stream: process.stderr },
        cliProgress.Presets.shades_classic,
      );
      bar.start(items.length, 0, { failed: 0 });
      const report = await uploadAll(store, items, { concurrency, onProgress: (p) => bar.update(p.done + p.failed, { failed: p.failed }) });
      bar.stop();
      console.log(`Uploaded ${report.uploaded} of ${items.length} files (${(report.bytes / 1e6).toFixed(1)} MB) in ${report.seconds.toFixed(1)} s.`);
      for (const f of report.failed) console.error(`  failed: ${f.name}: ${f.error}`);
      if (report.failed.length > 0) process.exitCode = 1;
    });

  program
    .command('status')
    .description('Counts per container and uploads still waiting to be processed.')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const s = await collectStatus(getStore(), lazyDeps().config);
      if (opts.json === true) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log('container        blobs');
      for (const [c, n] of Object.entries(s.containers)) console.log(`${c.padEnd(16)} ${String(n).padStart(6)}`);
      console.log('');
      console.log(`uploads ${s.uploads}: preprocessed ${s.preprocessed}, rejected ${s.rejected}, waiting for preprocessing ${s.pendingPreprocess}`);
      console.log(`scored ${s.predicted} (flagged ${s.flagged}), waiting to be scored ${s.pendingScore}; promoted model: ${s.model ?? 'none yet (train one: triage train --data mnist --store, then triage models promote <version>)'}`);
      if (s.modelProblem !== undefined) console.log(`the promoted model cannot score this instance's images: ${s.modelProblem}`);
      for (const [code, n] of Object.entries(s.rejectionsByCode).sort()) console.log(`  rejected ${code}: ${n}`);
    });

  const whoami = () => {
    try {
      return os.userInfo().username;
    } catch {
      return 'cli';
    }
  };

  program
    .command('label')
    .description('Record a reviewer\'s label for an image (relabeling keeps the history).')
    .argument('<name>', 'upload name, e.g. batch-1/7/00012.png')
    .argument('<class>', "one of the model's classes")
    .option('--by <reviewer>', 'who labels (default: your user name)')
    .option('--note <text>', 'free-text note kept with the label')
    .action(async (name: string, cls: string, opts: { by?: string; note?: string }) => {
      const r = await handleLabel({ name, body: { class: cls, ...(opts.note !== undefined ? { note: opts.note } : {}) }, by: opts.by ?? whoami() }, lazyDeps());
      if (r.status >= 400) throw new UsageError((r.body as { error: string }).error);
      console.log(`${name}: labeled ${cls} by ${(r.body as { labeledBy: string }).labeledBy}${r.status === 200 ? ' (relabeled; history kept)' : ''}`);
    });

  program
    .command('worklist')
    .description('Flagged images nobody has labeled yet, most urgent first.')
    .option('--page <n>', 'page', '1')
    .option('--page-size <n>', 'items per page', '20')
    .option('--reason <reason>', 'only images flagged for this reason (low-confidence, abnormal, image-quality)')
    .option('--prefix <prefix>', 'only uploads whose name starts with this, e.g. batch-1/')
    .option('--json', 'print JSON')
    .action(async (opts: { page: string; pageSize: string; reason?: string; prefix?: string; json?: boolean }) => {
      const r = await handleWorklist({ page: opts.page, pageSize: opts.pageSize, reason: opts.reason ?? null, prefix: opts.prefix ?? null }, lazyDeps());
      if (r.status >= 400) throw new UsageError((r.body as { error: string }).error);
      const w = r.body as import('../handlers/review').Worklist;
      if (opts.json === true) return void console.log(JSON.stringify(w, null, 2));
      console.log(`${w.total} images waiting for review (page ${w.page}, ${w.pageSize} per page)`);
      const pct = (p: number) => `${(p * 100).toFixed(1)}%`;
      console.log(`${'priority'.padEnd(9)}${'predicted'.padEnd(22)}${'flag rule'.padEnd(34)}${'reasons'.padEnd(30)}upload`);
      for (const i of w.items) {
        const predicted = i.topClass === undefined ? '-' : `${i.topClass} ${pct(i.confidence ?? 0)}`;
        // Screening: the positive class's probability and the threshold it is flagged at; else the confidence one.
        const rule =
          i.screening !== undefined
            ? `${i.screening.positiveClass} ${pct(i.screening.probability)} (flag >= ${pct(i.screening.threshold)})`
            : i.confidenceThreshold === undefined
              ? '-'
              : i.confidenceThreshold === null
                ? 'all (no threshold)'
                : `confidence < ${pct(i.confidenceThreshold)}`;
        console.log(`${i.priority.toFixed(3).padEnd(9)}${predicted.padEnd(22)}${rule.padEnd(34)}${i.reasons.join(',').padEnd(30)}${i.upload}`);
      }
    });

  const models = program.command('models').description('Model versions and which one is promoted.');
  models
    .command('list')
    .description('Every saved version, newest first; * marks the promoted one.')
    .action(async () => {
      const store = getStore();
      const [versions, current] = await Promise.all([listVersions(store), readCurrent(store)]);
      if (versions.length === 0) return void console.log('No model versions yet (train one: triage train --data mnist --store).');
      for (const v of versions) {
        const mark = v.version === current?.value.version ? '*' : ' ';
        const acc = typeof v.metrics?.accuracy === 'number' ? (v.metrics.accuracy * 100).toFixed(2) + '%' : '-';
        console.log(`${mark} ${v.version.padEnd(28)} ${String(v.architecture ?? '').padEnd(6)} acc ${acc.padStart(7)}  ${v.createdAt ?? ''}`);
      }
    });
  models
    .command('promote')
    .description('Make a version the promoted model (ETag-conditional: a concurrent promotion is refused).')
    .argument('<version>')
    .option('--reason <text>', 'why', 'promoted by hand')
    .action(async (version: string, opts: { reason: string }) => {
      const cur = await promote(getStore(), version, { by: whoami(), reason: opts.reason, instance: lazyDeps().config });
      console.log(`Promoted ${cur.version}${cur.history[0] ? ` (was ${cur.history[0].version})` : ''}.`);
    });
  models
    .command('rollback')
    .description('Promote the previously promoted version again.')
    .option('--reason <text>', 'why', 'rolled back by hand')
    .action(async (opts: { reason: string }) => {
      const cur = await rollback(getStore(), { by: whoami(), reason: opts.reason, instance: lazyDeps().config });
      console.log(`Rolled back to ${cur.version}.`);
    });

  program
    .command('sweep')
    .description('Score images that waited for a model and re-drive uploads that have no record (what the sweep timer does).')
    .option('--grace <seconds>', 'leave uploads younger than this to their own event', '120')
    .action(async (opts: { grace: string }) => {
      const r = await handleSweep(lazyDeps(), consoleLog, { graceMs: Number(opts.grace) * 1000 });
      console.log(JSON.stringify(r));
      if (r.errors > 0) process.exitCode = 1;
    });

  registerMlCommands(program, {
    getStore,
    imaging: () => {
      const c = loadImagingConfig(mergedSettings());
      return { profile: c.profile, xraySize: c.xraySize, maxInputBytes: c.maxUploadBytes, maxPixels: c.maxPixels };
    },
  });
  registerRetrainCommands(program, { getStore, getDeps: lazyDeps });

  program
    .command('samples')
    .description('Write held-out MNIST digits as PNG files (<dir>/<class>/<n>.png) to try the pipeline with.')
    .argument('<dir>')
    .option('--count <n>', 'how many digits (at most 2000)', '100')
    .option('--size <px>', 'image size; digits are scaled up like a scan', '112')
    .option('--white-ink', 'keep MNIST colours (white digit on black) instead of dark ink on white paper')
    .action(async (dir: string, opts: { count: string; size: string; whiteInk?: boolean }) => {
      const count = Number(opts.count);
      const size = Number(opts.size);
      if (!Number.isInteger(count) || count < 1 || count > 2000) throw new UsageError(`--count must be an integer from 1 to 2000, got ${opts.count}`);
      if (!Number.isInteger(size) || size < 28 || size > 4096) throw new UsageError(`--size must be an integer from 28 to 4096, got ${opts.size}`);
      const files = await writeSamples(dir, { count, size, inkOnWhite: opts.whiteInk !== true });
      console.log(`Wrote ${files.length} digits under ${dir}/<class>/.`);
    });

  return program;
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof RegistryError || (err instanceof Error && err.name === 'UsageError')) {
      console.error(`triage: ${err.message}`);
      return 2;
    }
    console.error(`triage: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (require.main === module) {
  void run(process.argv).then((code) => process.exit(code));
}
