/** `triage upload` and `triage samples`: images into the pipeline. */
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { planUpload, uploadAll } from '../upload';
import { writeSamples } from '../samples';
import { CommandContext, UsageError } from '../common';

export function registerUploadCommand(program: Command, ctx: CommandContext): void {
  program
    .command('upload')
    .description('Upload a file, or every file under a folder, to uploads/ (virtual folders keep the relative path).')
    .argument('<file-or-folder>')
    .option('--prefix <prefix>', 'virtual folder to put the uploads under, e.g. batch-7/', '')
    .option('--concurrency <n>', 'uploads at once', '8')
    .action(async (target: string, opts: { prefix: string; concurrency: string }) => {
      const concurrency = Number(opts.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
        throw new UsageError(`--concurrency must be an integer from 1 to 64, got ${opts.concurrency}`);
      const items = planUpload(target, opts.prefix);
      const store = ctx.getStore();
      await store.ensureContainers();
      const bar = new cliProgress.SingleBar(
        {
          format: 'upload [{bar}] {value}/{total} files | {failed} failed | {eta_formatted} left',
          noTTYOutput: true,
          notTTYSchedule: 2000,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(items.length, 0, { failed: 0 });
      const report = await uploadAll(store, items, {
        concurrency,
        onProgress: (p) => bar.update(p.done + p.failed, { failed: p.failed }),
      });
      bar.stop();
      console.log(
        `Uploaded ${report.uploaded} of ${items.length} files (${(report.bytes / 1e6).toFixed(1)} MB) in ${report.seconds.toFixed(1)} s.`,
      );
      for (const f of report.failed) console.error(`  failed: ${f.name}: ${f.error}`);
      if (report.failed.length > 0) process.exitCode = 1;
    });
}

export function registerSamplesCommand(program: Command): void {
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
      if (!Number.isInteger(count) || count < 1 || count > 2000)
        throw new UsageError(`--count must be an integer from 1 to 2000, got ${opts.count}`);
      if (!Number.isInteger(size) || size < 28 || size > 4096)
        throw new UsageError(`--size must be an integer from 28 to 4096, got ${opts.size}`);
      const files = await writeSamples(dir, { count, size, inkOnWhite: opts.whiteInk !== true });
      console.log(`Wrote ${files.length} digits under ${dir}/<class>/.`);
    });
}
