import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { epochProgress, registerMlCommands } from '../../../src/cli/commands/train';
import type { ModelCard } from '../../../src/ml/modelStore';

function program(lines: string[]): Command {
  const p = new Command('triage').exitOverride();
  registerMlCommands(p, {
    getStore: () => {
      throw new Error('no store in this test');
    },
    stderr: { write: () => true } as unknown as NodeJS.WriteStream,
    print: (l) => void lines.push(l),
  });
  return p;
}

describe('triage train / evaluate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ml-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains on a slice of MNIST, saves model, card, metrics and plots, and evaluates the saved model', async () => {
    const out = join(dir, 'model');
    const lines: string[] = [];
    await program(lines).parseAsync(
      [
        'train',
        '--data',
        'mnist',
        '--model',
        'mlp',
        '--epochs',
        '2',
        '--limit',
        '800',
        '--out',
        out,
        '--version',
        'test-1',
      ],
      { from: 'user' },
    );
    for (const f of [
      'model.json',
      'weights.bin',
      'card.json',
      'metrics.json',
      'confusion.svg',
      'risk-coverage.svg',
      'reliability.svg',
    ]) {
      expect(existsSync(join(out, f))).toBe(true);
    }
    const card = JSON.parse(readFileSync(join(out, 'card.json'), 'utf8')) as ModelCard;
    expect(card.version).toBe('test-1');
    expect(card.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(card.data.trainImages).toBe(720);
    expect(card.data.validationImages).toBe(80);
    expect(card.data.manifestHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(card.training?.epochsRun).toBe(2);
    expect(card.temperature).toBeGreaterThan(0);
    expect(card.metrics.accuracy).toBeGreaterThan(0.5);
    expect(lines.some((l) => /accuracy \d+\.\d+%/.test(l))).toBe(true);

    const evalLines: string[] = [];
    const report = join(dir, 'report');
    await program(evalLines).parseAsync(
      ['evaluate', '--data', 'mnist', '--model-dir', out, '--limit', '800', '--out', report, '--no-plots'],
      { from: 'user' },
    );
    const metrics = JSON.parse(readFileSync(join(report, 'metrics.json'), 'utf8')) as {
      accuracy: number;
      calibration: { temperature: number };
      confusion: number[][];
    };
    // Same model, same test slice, same validation split: the same figures as at training time.
    expect(metrics.accuracy).toBeCloseTo(card.metrics.accuracy as number, 10);
    expect(metrics.calibration.temperature).toBeCloseTo(card.temperature, 6);
    expect(metrics.confusion).toHaveLength(10);
  });

  it('rejects bad options with a usage error', async () => {
    await expect(
      program([]).parseAsync(['train', '--data', 'mnist', '--model', 'resnet', '--out', dir], { from: 'user' }),
    ).rejects.toThrow(/--model must be one of cnn, mlp, peer/);
    await expect(program([]).parseAsync(['train', '--data', 'mnist'], { from: 'user' })).rejects.toThrow(
      /--out <dir>, --store/,
    );
    await expect(
      program([]).parseAsync(['train', '--data', '/no/such/folder', '--out', dir], { from: 'user' }),
    ).rejects.toThrow(/--data must be mnist, fashion-mnist, blob or a folder/);
    await expect(
      program([]).parseAsync(['train', '--data', 'mnist', '--elastic', '-3', '--out', dir], { from: 'user' }),
    ).rejects.toThrow(/--elastic must be a number from 0 to 100, got -3/);
    await expect(
      program([]).parseAsync(['train', '--data', 'mnist', '--weight-average', '1', '--out', dir], { from: 'user' }),
    ).rejects.toThrow(/--weight-average must be a number from 0 to 0.999999, got 1/);
  });
});

describe('epochProgress', () => {
  afterEach(() => jest.useRealTimers());

  it('writes a progress line every 10 s when the output is not a terminal, without needing a timer to fire', () => {
    jest.useFakeTimers({ now: 1_000_000, doNotFake: ['setTimeout', 'setInterval', 'setImmediate'] });
    const written: string[] = [];
    const stream = { isTTY: false, write: (s: string) => void written.push(s) } as unknown as NodeJS.WriteStream;
    const p = epochProgress(stream);
    const batch = (n: number) =>
      p.onBatch({ epoch: 1, batch: n, batches: 100, loss: 0.5, accuracy: 0.75, imagesPerSecond: 42 });
    batch(1);
    expect(written).toEqual(['epoch 1: 1/100 batches | loss 0.5000 | acc 0.7500 | 42 img/s\n']);
    jest.setSystemTime(1_000_000 + 9_000);
    batch(2);
    expect(written).toHaveLength(1);
    jest.setSystemTime(1_000_000 + 10_500);
    batch(3);
    expect(written[1]).toBe('epoch 1: 3/100 batches | loss 0.5000 | acc 0.7500 | 42 img/s\n');
    p.onEpoch({ epoch: 1, epochs: 2, loss: 0.4, accuracy: 0.8, imagesPerSecond: 40, seconds: 12 } as Parameters<
      typeof p.onEpoch
    >[0]);
    expect(written[2]).toBe('epoch 1/2: loss 0.4000 acc 0.8000 | 40 img/s, 12.0 s\n');
  });
});
