/** `triage label` and `triage worklist`: the review loop from the command line. */
import type { Command } from 'commander';
import { handleLabel, handleWorklist } from '../../handlers/review';
import type { Worklist } from '../../triage/worklist';
import { CommandContext, UsageError, whoami } from '../common';

export function registerReviewCommands(program: Command, ctx: CommandContext): void {
  program
    .command('label')
    .description("Record a reviewer's label for an image (relabeling keeps the history).")
    .argument('<name>', 'upload name, e.g. batch-1/7/00012.png')
    .argument('<class>', "one of the model's classes")
    .option('--by <reviewer>', 'who labels (default: your user name)')
    .option('--note <text>', 'free-text note kept with the label')
    .action(async (name: string, cls: string, opts: { by?: string; note?: string }) => {
      const r = await handleLabel(
        {
          name,
          body: { class: cls, ...(opts.note !== undefined ? { note: opts.note } : {}) },
          by: opts.by ?? whoami(),
        },
        ctx.getDeps(),
      );
      if (r.status >= 400) throw new UsageError((r.body as { error: string }).error);
      console.log(
        `${name}: labeled ${cls} by ${(r.body as { labeledBy: string }).labeledBy}${r.status === 200 ? ' (relabeled; history kept)' : ''}`,
      );
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
      const r = await handleWorklist(
        { page: opts.page, pageSize: opts.pageSize, reason: opts.reason ?? null, prefix: opts.prefix ?? null },
        ctx.getDeps(),
      );
      if (r.status >= 400) throw new UsageError((r.body as { error: string }).error);
      const w = r.body as Worklist;
      if (opts.json === true) return void console.log(JSON.stringify(w, null, 2));
      console.log(`${w.total} images waiting for review (page ${w.page}, ${w.pageSize} per page)`);
      const pct = (p: number) => `${(p * 100).toFixed(1)}%`;
      console.log(
        `${'priority'.padEnd(9)}${'predicted'.padEnd(22)}${'flag rule'.padEnd(34)}${'reasons'.padEnd(30)}upload`,
      );
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
        console.log(
          `${i.priority.toFixed(3).padEnd(9)}${predicted.padEnd(22)}${rule.padEnd(34)}${i.reasons.join(',').padEnd(30)}${i.upload}`,
        );
      }
    });
}
