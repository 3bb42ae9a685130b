/** `triage status` and `triage sweep`: what happened to the uploads, and the sweep timer by hand. */
import type { Command } from 'commander';
import { collectStatus } from '../../storage/records/status';
import { inferOnce } from '../../handlers/infer';
import { preprocessOnce } from '../../handlers/preprocess';
import { handleSweep } from '../../handlers/sweep';
import { consoleLog } from '../../util/log';
import type { CommandContext } from '../common';

export function registerStatusCommand(program: Command, ctx: CommandContext): void {
  program
    .command('status')
    .description('Counts per container and uploads still waiting to be processed.')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const s = await collectStatus(ctx.getStore(), ctx.getDeps().config);
      if (opts.json === true) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log('container        blobs');
      for (const [c, n] of Object.entries(s.containers)) console.log(`${c.padEnd(16)} ${String(n).padStart(6)}`);
      console.log('');
      console.log(
        `uploads ${s.uploads}: preprocessed ${s.preprocessed}, rejected ${s.rejected}, waiting for preprocessing ${s.pendingPreprocess}`,
      );
      console.log(
        `scored ${s.predicted} (flagged ${s.flagged}), waiting to be scored ${s.pendingScore}; promoted model: ${s.model ?? 'none yet (train one: triage train --data mnist --store, then triage models promote <version>)'}`,
      );
      if (s.modelProblem !== undefined)
        console.log(`the promoted model cannot score this instance's images: ${s.modelProblem}`);
      for (const [code, n] of Object.entries(s.rejectionsByCode).sort()) console.log(`  rejected ${code}: ${n}`);
    });
}

export function registerSweepCommand(program: Command, ctx: CommandContext): void {
  program
    .command('sweep')
    .description(
      'Score images that waited for a model and re-drive uploads that have no record (what the sweep timer does).',
    )
    .option('--grace <seconds>', 'leave uploads younger than this to their own event', '120')
    .action(async (opts: { grace: string }) => {
      const r = await handleSweep({ preprocess: preprocessOnce, infer: inferOnce }, ctx.getDeps(), consoleLog, {
        graceMs: Number(opts.grace) * 1000,
      });
      console.log(JSON.stringify(r));
      if (r.errors > 0) process.exitCode = 1;
    });
}
