/** The speed benches' batch-size sweep: each engine is compared at its own best batch size. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  bestVsBest,
  combineRounds,
  median,
  reproduceCommand,
  stepsAt,
  sweepTable,
  writeResults,
  type BatchFigure,
} from '../../../bench/sweep';

const fig = (batch: number, imagesPerSec: number, imagesPerCpuSec = imagesPerSec): BatchFigure => ({
  batch,
  imagesPerSec,
  imagesPerCpuSec,
});

describe('batch-size sweep', () => {
  // PyTorch is fastest at 256 and slow at 1,000; tfjs the other way round.
  const torch = [fig(64, 9000), fig(256, 13972), fig(1000, 4074)];
  const wasm = [fig(64, 15000), fig(256, 17000), fig(1000, 18778)];

  it('compares each engine at its own best batch, not at one batch that suits one of them', () => {
    const r = bestVsBest({ name: 'wasm', figures: wasm }, { name: 'PyTorch', figures: torch });
    expect(r?.ratio).toBeCloseTo(18778 / 13972, 6);
    expect(r?.text).toBe('1.34 (wasm at batch 1000: 18,778 img/s, PyTorch at batch 256: 13,972)');
    expect(bestVsBest({ name: 'wasm', figures: wasm }, { name: 'PyTorch', figures: [] })).toBeUndefined();
  });

  it('tables every batch size in ascending order, each engine best in bold, the compared one marked', () => {
    const t = sweepTable(
      'inference',
      [1000, 64, 256],
      [
        { engine: 'torch', figures: torch },
        { engine: 'wasm', figures: wasm.slice(1) },
      ],
      256,
    );
    expect(t).toEqual([
      '| inference, img/s (per CPU-s) | batch 64 | batch 256 (compared) | batch 1000 | best batch |',
      '|---|---|---|---|---|',
      '| torch | 9,000 (9,000) | **13,972 (13,972)** | 4,074 (4,074) | 256 |',
      '| wasm | - | 17,000 (17,000) | **18,778 (18,778)** | 1000 |',
    ]);
  });

  it('combines rounds per batch size, and times as many images at every training batch size', () => {
    expect(
      combineRounds(
        [
          [fig(64, 1, 10), fig(256, 5, 50)],
          [fig(64, 3, 30), fig(256, 4, 40)],
          [fig(64, 2, 20), fig(256, 9, 90)],
        ],
        median,
      ),
    ).toEqual([fig(64, 2, 20), fig(256, 5, 50)]);
    expect(stepsAt(256, 64, 200)).toBe(50);
    expect(stepsAt(16, 32, 20)).toBe(40);
    expect(stepsAt(1000, 64, 3)).toBe(1);
  });

  it('writes the results file with the command, the load and the tables, leaving out --out and --note from the command', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sweep-'));
    try {
      const command = reproduceCommand('bench:speed', [
        '--batches',
        '20',
        '--out',
        '/tmp/x.md',
        '--note',
        'busy machine',
        '--rounds',
        '2',
      ]);
      expect(command).toBe('npm run bench:speed -- --batches 20 --rounds 2');
      const out = path.join(dir, 'results', 'speed.md');
      writeResults(out, {
        title: 'Speed',
        command,
        started: new Date('2026-12-02T01:00:00Z'),
        loadStart: '1.00, 2.00, 3.00',
        loadEnd: '4.00, 5.00, 6.00',
        note: 'A busy machine.',
        lines: ['first', '', 'second'],
        tables: [
          ['| a |', '|---|'],
          ['| b |', '|---|'],
        ],
      });
      expect(readFileSync(out, 'utf8')).toBe(
        [
          '# Speed',
          '',
          `Written by \`npm run bench:speed -- --batches 20 --rounds 2\` on 2026-12-02T01:00:00.000Z; load average (1, 5, 15 min) 1.00, 2.00, 3.00 at the start, 4.00, 5.00, 6.00 at the end, on ${os.cpus().length} logical cores. A busy machine.`,
          '',
          '```',
          'first',
          'second',
          '```',
          '',
          '| a |',
          '|---|',
          '',
          '| b |',
          '|---|',
          '',
        ].join('\n'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
