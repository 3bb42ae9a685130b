/**
 * Evaluation plots as SVG: confusion matrix, risk-coverage curve, reliability diagram.
 * Specs are Vega-Lite, compiled to Vega and rendered headless (renderer 'none', toSVG) in Node.
 *
 * vega and vega-lite ship as ES modules with top-level await, which CommonJS cannot require();
 * they are imported in a worker thread (a real Node ESM loader, also under jest's module sandbox).
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { EvaluationReport } from './evaluate';

export type VegaLiteSpec = Record<string, unknown>;

export function confusionSpec(r: Pick<EvaluationReport, 'confusion' | 'classNames'>): VegaLiteSpec {
  const values: Array<{ actual: string; predicted: string; count: number; share: number }> = [];
  r.confusion.forEach((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, p) =>
      values.push({
        actual: r.classNames[t] as string,
        predicted: r.classNames[p] as string,
        count,
        share: total === 0 ? 0 : count / total,
      }),
    );
  });
  const order = r.classNames;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Confusion matrix (rows: actual, colour: share of the row)',
    data: { values },
    width: 24 * order.length + 60,
    height: 24 * order.length + 60,
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: order, title: 'predicted' },
      y: { field: 'actual', type: 'nominal', sort: order, title: 'actual' },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: { field: 'share', type: 'quantitative', scale: { scheme: 'blues', domain: [0, 1] }, title: 'share' },
        },
      },
      {
        mark: { type: 'text', fontSize: 9 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: 'black' },
        },
      },
    ],
  };
}

export function riskCoverageSpec(r: Pick<EvaluationReport, 'riskCoverage' | 'aurc' | 'selective'>): VegaLiteSpec {
  const layers: unknown[] = [
    {
      data: { values: r.riskCoverage.map((p) => ({ coverage: p.coverage, risk: p.risk })) },
      mark: { type: 'line', interpolate: 'step-after', point: { size: 12 } },
      encoding: {
        x: {
          field: 'coverage',
          type: 'quantitative',
          scale: { domain: [0, 1] },
          title: 'coverage (share auto-accepted)',
        },
        y: { field: 'risk', type: 'quantitative', title: 'risk (error among accepted)' },
      },
    },
  ];
  if (r.selective) {
    const s = r.selective;
    const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
    const legend = { orient: 'bottom', direction: 'vertical', labelLimit: 480, title: null };
    layers.push({
      data: {
        values: [
          {
            risk: s.targetError,
            label:
              s.threshold === null
                ? `target error ${pct(s.targetError)}: no threshold reaches it on validation data`
                : `target error ${pct(s.targetError)} (threshold chosen on validation data)`,
          },
        ],
      },
      mark: { type: 'rule', color: 'firebrick' },
      encoding: {
        y: { field: 'risk', type: 'quantitative' },
        strokeDash: { field: 'label', type: 'nominal', scale: { range: [[4, 4]] }, legend },
      },
    });
    if (s.threshold !== null) {
      layers.push({
        data: {
          values: [
            {
              coverage: s.test.coverage,
              risk: s.test.risk,
              label: `operating point on the test data: threshold ${s.threshold.toFixed(4)}, coverage ${pct(s.test.coverage)}, error ${pct(s.test.risk)}`,
            },
          ],
        },
        mark: { type: 'point', filled: true, color: 'firebrick', size: 60 },
        encoding: {
          x: { field: 'coverage', type: 'quantitative' },
          y: { field: 'risk', type: 'quantitative' },
          shape: { field: 'label', type: 'nominal', legend },
        },
      });
    }
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `Risk-coverage (AURC ${r.aurc.toFixed(5)})`,
    width: 360,
    height: 240,
    layer: layers,
  };
}

export function reliabilitySpec(r: Pick<EvaluationReport, 'calibration'>): VegaLiteSpec {
  const c = r.calibration;
  // Each bin's count bar: the left half of the bin for "before", the right half for "after".
  const rows = [
    ...c.reliabilityBefore.map((b) => ({
      ...b,
      x0: b.lower,
      x1: (b.lower + b.upper) / 2,
      series: `before (ECE ${c.eceBefore.toFixed(4)})`,
    })),
    ...c.reliabilityAfter.map((b) => ({
      ...b,
      x0: (b.lower + b.upper) / 2,
      x1: b.upper,
      series: `after T=${c.temperature.toFixed(3)} (ECE ${c.eceAfter.toFixed(4)})`,
    })),
  ]
    .filter((b) => b.count > 0)
    .map((b) => ({ ...b, mid: (b.x0 + b.x1) / 2 }));
  const color = {
    field: 'series',
    type: 'nominal',
    title: null,
    legend: { orient: 'bottom', direction: 'vertical', labelLimit: 400 },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Reliability diagram (below: images per confidence bin)',
    data: { values: rows },
    vconcat: [
      {
        width: 360,
        height: 300,
        layer: [
          {
            data: {
              values: [
                { x: 0, y: 0 },
                { x: 1, y: 1 },
              ],
            },
            mark: { type: 'line', strokeDash: [4, 4], color: 'gray' },
            encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } },
          },
          {
            mark: { type: 'line', point: true },
            encoding: {
              x: { field: 'confidence', type: 'quantitative', scale: { domain: [0, 1] }, title: 'mean confidence' },
              y: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1] }, title: 'accuracy' },
              color,
            },
          },
        ],
      },
      {
        // How many images each point stands for: a point of 3 images says little.
        width: 360,
        height: 90,
        layer: [
          {
            mark: { type: 'rect', opacity: 0.6 },
            encoding: {
              x: { field: 'x0', type: 'quantitative', scale: { domain: [0, 1] }, title: 'confidence bin' },
              x2: { field: 'x1' },
              y: { field: 'count', type: 'quantitative', scale: { type: 'symlog' }, title: 'images' },
              color,
            },
          },
          {
            mark: { type: 'text', dy: -5, fontSize: 7 },
            encoding: {
              x: { field: 'mid', type: 'quantitative' },
              y: { field: 'count', type: 'quantitative' },
              text: { field: 'count', type: 'quantitative' },
              color,
            },
          },
        ],
      },
    ],
  };
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  try {
    const vl = await import(workerData.vegaLite);
    const vega = await import(workerData.vega);
    const out = [];
    for (const spec of workerData.specs) {
      const compiled = vl.compile(spec).spec;
      const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
      out.push(await view.toSVG());
      view.finalize();
    }
    parentPort.postMessage({ ok: true, svgs: out });
  } catch (e) {
    parentPort.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
})();
`;

function resolveModule(name: string): string {
  try {
    return pathToFileURL(require.resolve(name)).href;
  } catch {
    throw new Error(`${name} is not installed: plots need the npm packages vega and vega-lite`);
  }
}

/** Renders Vega-Lite specs to SVG strings, in order. */
export async function renderSvgs(specs: VegaLiteSpec[]): Promise<string[]> {
  const workerData = { specs, vega: resolveModule('vega'), vegaLite: resolveModule('vega-lite') };
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
    let settled = false;
    w.once('message', (m: { ok: boolean; svgs?: string[]; error?: string }) => {
      settled = true;
      void w.terminate();
      if (m.ok) resolve(m.svgs ?? []);
      else reject(new Error(`rendering plots failed: ${m.error ?? 'unknown error'}`));
    });
    w.once('error', (e) => {
      settled = true;
      reject(e);
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`the plot worker exited with code ${code}`));
    });
  });
}

/** ROC curve of a screening report, with the diagonal and the operating point (the threshold) marked. */
export function rocSpec(s: NonNullable<EvaluationReport['screening']>): VegaLiteSpec {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `ROC, ${s.positiveClass} positive (AUROC ${s.test.auroc.toFixed(4)})`,
    width: 300,
    height: 300,
    layer: [
      {
        data: {
          values: [
            { fpr: 0, tpr: 0 },
            { fpr: 1, tpr: 1 },
          ],
        },
        mark: { type: 'line', strokeDash: [4, 4], color: 'grey' },
        encoding: { x: { field: 'fpr', type: 'quantitative' }, y: { field: 'tpr', type: 'quantitative' } },
      },
      {
        data: { values: s.roc.filter((p) => Number.isFinite(p.fpr)).map((p) => ({ fpr: p.fpr, tpr: p.tpr })) },
        mark: { type: 'line', interpolate: 'step-after' },
        encoding: {
          x: {
            field: 'fpr',
            type: 'quantitative',
            scale: { domain: [0, 1] },
            title: '1 - specificity (negatives flagged)',
          },
          y: {
            field: 'tpr',
            type: 'quantitative',
            scale: { domain: [0, 1] },
            title: 'sensitivity (positives flagged)',
          },
        },
      },
      {
        data: {
          values: [
            {
              fpr: 1 - s.test.specificity,
              tpr: s.test.sensitivity,
              label: `p >= ${s.threshold.toFixed(4)}: sensitivity ${pct(s.test.sensitivity)}, negatives cleared ${pct(s.test.specificity)}`,
            },
          ],
        },
        mark: { type: 'point', filled: true, color: 'firebrick', size: 70 },
        encoding: {
          x: { field: 'fpr', type: 'quantitative' },
          y: { field: 'tpr', type: 'quantitative' },
          shape: {
            field: 'label',
            type: 'nominal',
            title: 'operating point',
            legend: { orient: 'bottom', direction: 'vertical', labelLimit: 500 },
          },
        },
      },
    ],
  };
}

export const PLOT_FILES = {
  confusion: 'confusion.svg',
  riskCoverage: 'risk-coverage.svg',
  reliability: 'reliability.svg',
} as const;
export const ROC_FILE = 'roc.svg';

/** Writes the three plots (and roc.svg for a screening report) into `dir` (beside metrics.json); returns the file paths. */
export async function writePlots(
  dir: string,
  report: EvaluationReport,
): Promise<Record<keyof typeof PLOT_FILES, string> & { roc?: string }> {
  const [confusion, risk, reliability, roc] = await renderSvgs([
    confusionSpec(report),
    riskCoverageSpec(report),
    reliabilitySpec(report),
    ...(report.screening ? [rocSpec(report.screening)] : []),
  ]);
  await mkdir(dir, { recursive: true });
  const out = {
    confusion: join(dir, PLOT_FILES.confusion),
    riskCoverage: join(dir, PLOT_FILES.riskCoverage),
    reliability: join(dir, PLOT_FILES.reliability),
    ...(roc !== undefined ? { roc: join(dir, ROC_FILE) } : {}),
  };
  await Promise.all([
    writeFile(out.confusion, confusion ?? ''),
    writeFile(out.riskCoverage, risk ?? ''),
    writeFile(out.reliability, reliability ?? ''),
    ...(out.roc !== undefined ? [writeFile(out.roc, roc ?? '')] : []),
  ]);
  return out;
}
