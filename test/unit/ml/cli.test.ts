import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { registerMlCommands } from '../../../src/ml/cli';
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
    await program(lines).parseAsync(['train', '--data', 'mnist', '--model', 'mlp', '--epochs', '2', '--limit', '800', '--out', out, '--version', 'test-1'], { from: 'user' });
    for (const f of ['model.json', 'weights.bin', 'card.json', 'metrics.json', 'confusion.svg', 'risk-coverage.svg', 'reliability.svg']) {
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
    await program(evalLines).parseAsync(['evaluate', '--data', 'mnist', '--model-dir', out, '--limit', '800', '--out', report, '--no-plots'], { from: 'user' });
    const metrics = JSON.parse(readFileSync(join(report, 'metrics.json'), 'utf8')) as { accuracy: number; calibration: { temperature: number }; confusion: number[][] };
    // Same model, same test slice, same validation split: the same figures as at training time.
    expect(metrics.accuracy).toBeCloseTo(card.metrics.accuracy as number, 10);
    expect(metrics.calibration.temperature).toBeCloseTo(card.temperature, 6);
    expect(metrics.confusion).toHaveLength(10);
  });

  it('rejects bad options with a usage error', async () => {
    await expect(program([]).parseAsync(['train', '--data', 'mnist', '--model', 'resnet', '--out', dir], { from: 'user' })).rejects.toThrow(/--model must be one of cnn, mlp, peer/);
    await expect(program([]).parseAsync(['train', '--data', 'mnist'], { from: 'user' })).rejects.toThrow(/--out <dir>, --store/);
    await expect(program([]).parseAsync(['train', '--data', '/no/such/folder', '--out', dir], { from: 'user' })).rejects.toThrow(/--data must be mnist, fashion-mnist, blob or a folder/);
    await expect(program([]).parseAsync(['train', '--data', 'mnist', '--elastic', '-3', '--out', dir], { from: 'user' })).rejects.toThrow(/--elastic must be a number from 0 to 100, got -3/);
    await expect(program([]).parseAsync(['train', '--data', 'mnist', '--weight-average', '1', '--out', dir], { from: 'user' })).rejects.toThrow(/--weight-average must be a number from 0 to 0.999999, got 1/);
  });
});
