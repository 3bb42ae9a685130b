#!/usr/bin/env node
/**
 * What the kernels change, measured in one process on tfjs-backend-wasm (1 thread, SIMD build):
 *  - training: ms per step of a small conv net (28x28x1 -> conv 16, max pool, conv 32, max pool,
 *    dense 64, dense 10; Adam, batch 64) with the kernels' generated SIMD loops, then with their
 *    JS/XNNPACK fallbacks (setSimdKernelsEnabled(false)), and on tfjs's cpu backend (one step:
 *    it takes seconds). Stock wasm
 *    cannot train it at all (it has no Conv2DBackpropFilter), which the first line shows;
 *  - inference: images/s of model.predict at batch 64, stock wasm kernels against these.
 * Rounds alternate the configurations; each figure is the median of the rounds.
 *
 *   npm run bench -w @image-triage/tfjs-wasm-kernels [-- --rounds 5 --steps 20]
 *
 * Plain JavaScript over the compiled package (dist/, which `npm install` builds).
 */
'use strict';
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const os = require('node:os');
const kernels = require('..');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const ROUNDS = arg('--rounds', 5);
const STEPS = arg('--steps', 20);
const BATCH = 64;

function model() {
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 16, kernelSize: 3, activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 64, activation: 'relu' }));
  m.add(tf.layers.dense({ units: 10, activation: 'softmax' }));
  m.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
  return m;
}

function batch() {
  const x = tf.randomUniform([BATCH, 28, 28, 1], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.randomUniform([BATCH], 0, 10, 'int32', 2), 10).toFloat();
  return { x, y };
}

async function trainMs(backend, simd, steps = STEPS) {
  await tf.setBackend(backend);
  kernels.setSimdKernelsEnabled(simd);
  const m = model();
  const { x, y } = batch();
  await m.trainOnBatch(x, y); // warm-up: compiles the kernels for these shapes
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await m.trainOnBatch(x, y);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  tf.dispose([x, y]);
  m.dispose();
  kernels.setSimdKernelsEnabled(true);
  return ms;
}

async function inferImgPerS(registered) {
  if (registered) kernels.registerWasmTrainingKernels();
  else kernels.unregisterWasmTrainingKernels();
  await tf.setBackend('wasm');
  const m = model();
  const { x, y } = batch();
  tf.dispose(m.predict(x)); // warm-up
  const n = STEPS * 2;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const p = m.predict(x);
    await p.data();
    p.dispose();
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  tf.dispose([x, y]);
  m.dispose();
  return (n * BATCH) / s;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  tf.env().set('PROD', true);
  const load = os.loadavg().map((l) => l.toFixed(2));
  console.log(
    `${new Date().toISOString()}  node ${process.version}  tfjs ${tf.version.tfjs}  ${os.cpus().length} cores  load ${load.join(' ')}`,
  );
  console.log(`rounds ${ROUNDS}, ${STEPS} training steps of batch ${BATCH} per round`);
  // Stock wasm: no Conv2DBackpropFilter, so no conv net trains.
  kernels.unregisterWasmTrainingKernels();
  await tf.setBackend('wasm');
  let stock;
  try {
    await trainMs('wasm', true);
    stock = 'trains';
  } catch (e) {
    stock = `fails: ${String(e.message ?? e).split('\n')[0]}`;
  }
  console.log(`stock wasm training: ${stock}`);
  const r = { simd: [], fallback: [], cpu: [], inferStock: [], inferKernels: [] };
  for (let i = 0; i < ROUNDS; i++) {
    kernels.registerWasmTrainingKernels();
    r.simd.push(await trainMs('wasm', true));
    r.fallback.push(await trainMs('wasm', false));
    // tfjs cpu takes seconds per step: one timed step, in the first round only.
    if (i === 0) r.cpu.push(await trainMs('cpu', true, 1));
    r.inferStock.push(await inferImgPerS(false));
    r.inferKernels.push(await inferImgPerS(true));
  }
  const f = (x) => x.toFixed(1);
  console.log(
    `training step, ms (median):  wasm + kernels (SIMD) ${f(median(r.simd))}  |  wasm + kernels (JS/XNNPACK fallbacks) ${f(median(r.fallback))}  |  tfjs cpu ${f(median(r.cpu))} (one step)`,
  );
  console.log(
    `inference at batch ${BATCH}, img/s (median):  stock wasm ${f(median(r.inferStock))}  |  wasm + kernels ${f(median(r.inferKernels))}`,
  );
  console.log(
    `load at the end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
