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
    const report = evaluateProbabilities(
      { probs, labels, source: 't' },
      ['cat', 'dog'],
      { probs, labels },
      { targetSelectiveError: 0.2 },
    );
    const files = await writePlots(dir, report);
    const confusion = readFileSync(files.confusion, 'utf8');
    expect(confusion.startsWith('<svg')).toBe(true);
    expect(confusion).toContain('Confusion matrix');
    expect(confusion).toContain('dog');
    const risk = readFileSync(files.riskCoverage, 'utf8');
    expect(risk).toContain('AURC');
    // The legend names the target line and the operating point with its figures.
    expect(report.selective?.threshold).not.toBeNull();
    expect(risk).toContain('target error 20.00% (threshold chosen on validation data)');
    expect(risk).toContain(`operating point on the test data: threshold ${report.selective?.threshold?.toFixed(4)}`);
    const reliability = readFileSync(files.reliability, 'utf8');
    expect(reliability).toContain('Reliability diagram');
    // Bin counts: each non-empty bin's number of images is written on its bar.
    const counts = report.calibration.reliabilityBefore.filter((b) => b.count > 0).map((b) => b.count);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(6);
    for (const n of counts) expect(reliability).toMatch(new RegExp(`<text[^>]*>${n}</text>`));
  });

  it('says on the risk-coverage plot when no threshold reaches the target error on validation', async () => {
    const probs = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.3, 0.7];
    const labels = [1, 0, 1, 0];
    const report = evaluateProbabilities(
      { probs, labels, source: 't' },
      ['cat', 'dog'],
      { probs, labels },
      { targetSelectiveError: 0.005 },
    );
    expect(report.selective?.threshold).toBeNull();
    const files = await writePlots(join(dir, 'unreached'), report);
    const risk = readFileSync(files.riskCoverage, 'utf8');
    expect(risk).toContain('target error 0.50%: no threshold reaches it on validation data');
    expect(risk).not.toContain('operating point');
  });
});
