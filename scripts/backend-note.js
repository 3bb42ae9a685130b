#!/usr/bin/env node
/**
 * Said once at install (npm's `prepare`): whether the optional @tensorflow/tfjs-node loaded, and
 * what its absence means. Its install step downloads libtensorflow; where that cannot happen, npm
 * skips the optional package without a word.
 */
'use strict';
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

function note() {
  let reason;
  try {
    require.resolve('@tensorflow/tfjs-node', { paths: [ROOT] });
  } catch {
    reason = 'it is not installed (its install step downloads libtensorflow, which failed or was not allowed here)';
  }
  if (reason === undefined) {
    try {
      require(require.resolve('@tensorflow/tfjs-node', { paths: [ROOT] }));
      return 'ML backend: @tensorflow/tfjs-node loaded; models train and score on native TensorFlow.';
    } catch (e) {
      reason = `it is installed but its native binding does not load (${String((e && e.message) || e).split('\n')[0]})`;
    }
  }
  return (
    `ML backend: the optional @tensorflow/tfjs-node was skipped: ${reason}.\n` +
    '  Nothing is missing: models train and score on @tensorflow/tfjs-backend-wasm (SIMD, with the\n' +
    "  project's own kernels) instead, slower than native TensorFlow. TRIAGE_BACKEND forces a backend\n" +
    '  (README, "ML backends").'
  );
}

if (require.main === module) console.log(note());

module.exports = { note };
