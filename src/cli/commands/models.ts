/** `triage models list|promote|rollback`: model versions and which one is promoted. */
import type { Command } from 'commander';
import { listVersions, promote, readCurrent, rollback } from '../../registry/registry';
import { CommandContext, whoami } from '../common';

export function registerModelCommands(program: Command, ctx: CommandContext): void {
  const models = program.command('models').description('Model versions and which one is promoted.');
  models
    .command('list')
    .description('Every saved version, newest first; * marks the promoted one.')
    .action(async () => {
      const store = ctx.getStore();
      const [versions, current] = await Promise.all([listVersions(store), readCurrent(store)]);
      if (versions.length === 0)
        return void console.log('No model versions yet (train one: triage train --data mnist --store).');
      for (const v of versions) {
        const mark = v.version === current?.value.version ? '*' : ' ';
        const acc = typeof v.metrics?.accuracy === 'number' ? (v.metrics.accuracy * 100).toFixed(2) + '%' : '-';
        console.log(
          `${mark} ${v.version.padEnd(28)} ${String(v.architecture ?? '').padEnd(6)} acc ${acc.padStart(7)}  ${v.createdAt ?? ''}`,
        );
      }
    });
  models
    .command('promote')
    .description('Make a version the promoted model (ETag-conditional: a concurrent promotion is refused).')
    .argument('<version>')
    .option('--reason <text>', 'why', 'promoted by hand')
    .action(async (version: string, opts: { reason: string }) => {
      const cur = await promote(ctx.getStore(), version, {
        by: whoami(),
        reason: opts.reason,
        instance: ctx.getDeps().config,
      });
      console.log(`Promoted ${cur.version}${cur.history[0] ? ` (was ${cur.history[0].version})` : ''}.`);
    });
  models
    .command('rollback')
    .description('Promote the previously promoted version again.')
    .option('--reason <text>', 'why', 'rolled back by hand')
    .action(async (opts: { reason: string }) => {
      const cur = await rollback(ctx.getStore(), { by: whoami(), reason: opts.reason, instance: ctx.getDeps().config });
      console.log(`Rolled back to ${cur.version}.`);
    });
}
