/**
 * Batch-size sweeps for the speed benches: every engine is timed at every batch size, and engines
 * are compared at each one's best (a peer timed only at a batch size that suits another engine says
 * little), then tabled and written to bench/results/ with the date and the machine's load.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Throughput at one batch size. */
export interface BatchFigure {
  batch: number;
  imagesPerSec: number;
  /** Images per CPU-second of the whole process (all threads): less sensitive to other load. */
  imagesPerCpuSec: number;
}

/** A comma-separated list of positive integers (`--infer-batches 64,256,1000`). */
export function parseBatches(option: string, value: string | undefined): number[] {
  const list = String(value).split(',').map(Number);
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n <= 0))
    throw new Error(`${option} expects positive integers separated by commas, got ${value}`);
  return list;
}

/** Timed steps at `batch` that see as many images as `refSteps` steps at `refBatch` (at least one). */
export function stepsAt(batch: number, refBatch: number, refSteps: number): number {
  return Math.max(1, Math.round((refSteps * refBatch) / batch));
}

/** A comma-separated list of `choices` (e.g. `--engines wasm,torch`); an unknown one is an error naming the choices. */
export function parseChoices<T extends string>(value: string | undefined, choices: readonly T[], what: string): T[] {
  const list = String(value).split(',');
  for (const e of list)
    if (!(choices as readonly string[]).includes(e))
      throw new Error(`unknown ${what} ${e}; expected ${choices.join(', ')}`);
  return list as T[];
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** One figure per batch size from several rounds' figures, each value combined by `how` (median, max). */
export function combineRounds(rounds: BatchFigure[][], how: (values: number[]) => number): BatchFigure[] {
  const batches = [...new Set(rounds.flatMap((r) => r.map((f) => f.batch)))];
  return batches.map((batch) => {
    const at = rounds.flatMap((r) => r.filter((f) => f.batch === batch));
    return {
      batch,
      imagesPerSec: how(at.map((f) => f.imagesPerSec)),
      imagesPerCpuSec: how(at.map((f) => f.imagesPerCpuSec)),
    };
  });
}

/** The figure at the batch size with the highest images/s. */
export function best(figures: BatchFigure[]): BatchFigure | undefined {
  let b: BatchFigure | undefined;
  for (const f of figures) if (b === undefined || f.imagesPerSec > b.imagesPerSec) b = f;
  return b;
}

export function fmt(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

/**
 * Markdown rows: one per engine, one column per batch size (ascending), "img/s (per CPU-s)"; each
 * engine's best in bold; `compared` marks the batch size engines are compared at, if only one is.
 */
export function sweepTable(
  what: string,
  batchSizes: number[],
  rows: { engine: string; figures: BatchFigure[] }[],
  compared?: number,
): string[] {
  const batches = [...new Set(batchSizes)].sort((a, b) => a - b);
  const out = [
    `| ${what}, img/s (per CPU-s) | ` +
      batches.map((b) => `batch ${b}${b === compared ? ' (compared)' : ''}`).join(' | ') +
      ' | best batch |',
    '|---|' + batches.map(() => '---').join('|') + '|---|',
  ];
  for (const r of rows) {
    const top = best(r.figures);
    const cells = batches.map((b) => {
      const f = r.figures.find((x) => x.batch === b);
      if (f === undefined) return '-';
      const cell = `${fmt(f.imagesPerSec)} (${fmt(f.imagesPerCpuSec)})`;
      return f === top ? `**${cell}**` : cell;
    });
    out.push(`| ${r.engine} | ${cells.join(' | ')} | ${top?.batch ?? '-'} |`);
  }
  return out;
}

/** "2.41 (wasm 256: 30.3 img/s, PyTorch 32: 10.5)": the ratio of each engine's best, and where each is. */
export function bestVsBest(
  mine: { name: string; figures: BatchFigure[] },
  peer: { name: string; figures: BatchFigure[] },
): { ratio: number; text: string } | undefined {
  const a = best(mine.figures);
  const b = best(peer.figures);
  if (a === undefined || b === undefined) return undefined;
  const ratio = a.imagesPerSec / b.imagesPerSec;
  return {
    ratio,
    text: `${ratio.toFixed(2)} (${mine.name} at batch ${a.batch}: ${fmt(a.imagesPerSec)} img/s, ${peer.name} at batch ${b.batch}: ${fmt(b.imagesPerSec)})`,
  };
}

/** The command as run, less where it wrote its results (--out) and the note about the machine (--note). */
export function reproduceCommand(npmScript: string, argv: string[]): string {
  const hidden = ['--out', '--note'];
  const shown = argv.filter((a, i) => !hidden.includes(a) && !hidden.includes(argv[i - 1] ?? ''));
  return `npm run ${npmScript} -- ${shown.join(' ')}`.trimEnd();
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(', ');
}

/**
 * Writes a bench's results file: the command, date, cores and load average at start and end, an
 * optional note, the bench's printed lines (in a code block) and its markdown tables.
 */
export function writeResults(
  out: string,
  o: {
    title: string;
    command: string;
    started: Date;
    loadStart: string;
    loadEnd: string;
    note?: string;
    lines: string[];
    tables: string[][];
  },
): void {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const md = [
    `# ${o.title}`,
    '',
    `Written by \`${o.command}\` on ${o.started.toISOString()}; load average (1, 5, 15 min) ${o.loadStart} at the start, ${o.loadEnd} at the end, on ${os.cpus().length} logical cores.${o.note !== undefined ? ` ${o.note}` : ''}`,
    '',
    '```',
    ...o.lines.filter((l) => l !== ''),
    '```',
    ...o.tables.flatMap((t) => ['', ...t]),
    '',
  ].join('\n');
  fs.writeFileSync(out, md);
}

/** The start of a bench run: when, the load, and `say`, which prints a line and keeps it for the results file. */
export function startRun(): { started: Date; loadStart: string; lines: string[]; say: (line: string) => void } {
  const lines: string[] = [];
  return {
    started: new Date(),
    loadStart: loadAverage(),
    lines,
    say: (line: string): void => {
      console.log(line);
      lines.push(line);
    },
  };
}

/**
 * The end of a bench run: its notes, the load at the end, the command that reproduces it, and
 * the results file (`out`, unless undefined).
 */
export function finishRun(
  say: (line: string) => void,
  o: {
    npmScript: string;
    argv: string[];
    title: string;
    out: string | undefined;
    note: string | undefined;
    started: Date;
    loadStart: string;
    notes: string[];
    lines: string[];
    tables: string[][];
  },
): void {
  for (const n of o.notes) say(`note: ${n}`);
  const loadEnd = loadAverage();
  say(`load average at end: ${loadEnd}`);
  const command = reproduceCommand(o.npmScript, o.argv);
  console.log(`\nreproduce: ${command}`);
  if (o.out === undefined) return;
  writeResults(o.out, {
    title: o.title,
    command,
    started: o.started,
    loadStart: o.loadStart,
    loadEnd,
    ...(o.note !== undefined ? { note: o.note } : {}),
    lines: o.lines,
    tables: o.tables,
  });
  console.log(`written to ${o.out}`);
}
