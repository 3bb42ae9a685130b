#!/usr/bin/env node
/**
 * `triage`: the command line of the pipeline. Talks to the storage account of the settings
 * (environment, then local.settings.json); with UseDevelopmentStorage=true, to the Azurite of
 * the embedded runtime started by `npm start`.
 */
import { Command, CommanderError } from 'commander';
import cliProgress from 'cli-progress';
import { ConfigError, loadConfig } from '../config';
import { BlobStore } from '../storage/blobStore';
import { collectStatus } from '../handlers/status';
import { mergedSettings, resolveLocalStorage } from '../local/settings';
import { planUpload, uploadAll, UsageError } from './upload';
import { writeSamples } from './samples';

export function storeFromSettings(): BlobStore {
  const config = loadConfig(resolveLocalStorage(mergedSettings()));
  return BlobStore.fromConnection(config.storage);
}

export function buildProgram(getStore: () => BlobStore = storeFromSettings): Command {
  const program = new Command('triage').description('Image triage pipeline: upload images, see what happened to them.').exitOverride();

  program
    .command('upload')
    .description('Upload a file, or every file under a folder, to uploads/ (virtual folders keep the relative path).')
    .argument('<file-or-folder>')
    .option('--prefix <prefix>', 'virtual folder to put the uploads under, e.g. batch-7/', '')
    .option('--concurrency <n>', 'uploads at once', '8')
    .action(async (target: string, opts: { prefix: string; concurrency: string }) => {
      const items = planUpload(target, opts.prefix);
      const concurrency = Number(opts.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError(`--concurrency must be an integer from 1 to 64, got ${opts.concurrency}`);
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
      const s = await collectStatus(getStore());
      if (opts.json === true) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log('container        blobs');
      for (const [c, n] of Object.entries(s.containers)) console.log(`${c.padEnd(16)} ${String(n).padStart(6)}`);
      console.log('');
      console.log(`uploads ${s.uploads}: preprocessed ${s.preprocessed}, rejected ${s.rejected}, pending ${s.pendingPreprocess}`);
      for (const [code, n] of Object.entries(s.rejectionsByCode).sort()) console.log(`  rejected ${code}: ${n}`);
    });

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
    if (err instanceof UsageError || err instanceof ConfigError) {
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
