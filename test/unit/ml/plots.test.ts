import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateProbabilities } from '../../../src/ml/evaluate';
import { writePlots } from '../../../src/ml/plots';

describe('plots', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plots-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the confusion matrix, risk-coverage curve and reliability diagram as SVG', async () => {
    const probs = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.3, 0.7, 0.95, 0.05, 0.45, 0.55];
    const labels = [0, 1, 1, 1, 0, 0];
    const report = evaluateProbabilities({ probs, labels, source: 't' }, ['cat', 'dog'], { probs, labels });
    const files = await writePlots(dir, report);
    const confusion = readFileSync(files.confusion, 'utf8');
    expect(confusion.startsWith('<svg')).toBe(true);
    expect(confusion).toContain('Confusion matrix');
    expect(confusion).toContain('dog');
    expect(readFileSync(files.riskCoverage, 'utf8')).toContain('AURC');
    expect(readFileSync(files.reliability, 'utf8')).toContain('Reliability diagram');
  });
});
