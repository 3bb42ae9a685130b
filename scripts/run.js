#!/usr/bin/env node
/**
 * Runs a compiled entry point of the project, compiling first only when the sources changed.
 *
 *   node scripts/run.js src/cli/main.js --help    ->  node dist/src/cli/main.js --help
 *   node scripts/run.js --build                   ->  compiles now (what `npm install` runs)
 *
 * Plain JavaScript, so it needs no compilation itself. The sources (src/, functions/, bench/,
 * tsconfig.json, and each workspace package's src/, tsconfig.json and package.json) are hashed (a
 * few milliseconds) and compared with the hash stored in dist/ by the last successful build; only a
 * difference runs `tsc -b`, which builds the packages (packages/NAME/dist/) and then the project
 * (dist/), each incrementally (their tsconfig.tsbuildinfo). A missing package build counts as a
 * difference. A lock in dist/ lets two commands started at once share one build.
 */
'use strict';
const { createHash } = require('node:crypto');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, '.sources-hash');
const LOCK = path.join(DIST, '.build-lock');
const PACKAGES = fs
  .readdirSync(path.join(ROOT, 'packages'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => path.join('packages', e.name))
  .sort();
const SOURCE_DIRS = ['src', 'functions', 'bench', ...PACKAGES.map((p) => path.join(p, 'src'))];
const SOURCE_FILES = [
  'tsconfig.json',
  ...PACKAGES.flatMap((p) => [path.join(p, 'tsconfig.json'), path.join(p, 'package.json')]),
];
const SOURCE_EXT = /\.(ts|js|json)$/;
/** A build lock older than this is left over from a killed build. */
const STALE_LOCK_MS = 30 * 60 * 1000;

function walk(dir, out) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (SOURCE_EXT.test(e.name)) out.push(p);
  }
}

/** Hash of every source file's path and bytes: any edit, addition or removal changes it. */
function sourcesHash() {
  const files = SOURCE_FILES.map((f) => path.join(ROOT, f));
  for (const d of SOURCE_DIRS) walk(path.join(ROOT, d), files);
  files.sort();
  const h = createHash('sha256');
  for (const f of files) {
    let data;
    try {
      data = fs.readFileSync(f);
    } catch {
      continue;
    }
    h.update(path.relative(ROOT, f)).update('\0').update(String(data.length)).update('\0').update(data);
  }
  return h.digest('hex');
}

function readStamp() {
  try {
    return fs.readFileSync(STAMP, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Takes the build lock; waits while another live process holds it. */
function lock() {
  fs.mkdirSync(DIST, { recursive: true });
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let holder;
    let age;
    try {
      holder = Number(fs.readFileSync(LOCK, 'utf8'));
      age = Date.now() - fs.statSync(LOCK).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (!Number.isInteger(holder) || !alive(holder) || age > STALE_LOCK_MS) {
      fs.rmSync(LOCK, { force: true });
      continue;
    }
    if (!told) {
      process.stderr.write(`waiting for the build another command runs (pid ${holder}) ...\n`);
      told = true;
    }
    sleep(250);
  }
}

function unlock() {
  fs.rmSync(LOCK, { force: true });
}

/** Compiles; returns tsc's exit code. The hash is taken before compiling, so an edit made meanwhile triggers the next build. */
function build(reason) {
  lock();
  try {
    const hash = sourcesHash();
    if (reason !== 'forced' && readStamp() === hash) return 0; // another command built it while we waited
    process.stderr.write(`compiling (${reason}) ...\n`);
    const started = Date.now();
    const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
    const r = spawnSync(process.execPath, [tsc, '-b', path.join(ROOT, 'tsconfig.json')], {
      cwd: ROOT,
      stdio: 'inherit',
    });
    const code = r.status ?? 1;
    if (code === 0) {
      fs.writeFileSync(STAMP, hash + '\n');
      process.stderr.write(`compiled in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    } else {
      fs.rmSync(STAMP, { force: true });
    }
    return code;
  } finally {
    unlock();
  }
}

/** Whether every workspace package's compiled entry point (its package.json `main`) exists. */
function packagesBuilt() {
  return PACKAGES.every((p) => {
    const { main } = JSON.parse(fs.readFileSync(path.join(ROOT, p, 'package.json'), 'utf8'));
    return fs.existsSync(path.join(ROOT, p, main));
  });
}

/** Compiles when the sources differ from what dist/ was built from; returns 0 when dist/ is current. */
function ensureBuilt() {
  const stamp = readStamp();
  if (stamp === undefined || !packagesBuilt()) return build('no build yet');
  if (stamp !== sourcesHash()) return build('sources changed');
  return 0;
}

function runEntry(entry, args) {
  const file = path.join(DIST, entry);
  const child = spawn(process.execPath, [file, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the child directly (same process group); a signal sent to this process alone is passed on.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}

function main(argv) {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h') {
    process.stderr.write(
      'usage: node scripts/run.js --build | --check | <entry under dist/, e.g. src/cli/main.js> [args...]\n',
    );
    return process.exit(first === undefined ? 2 : 0);
  }
  if (first === '--build') return process.exit(build('forced'));
  if (first === '--check') {
    const stamp = readStamp();
    const current = stamp !== undefined && stamp === sourcesHash() && packagesBuilt();
    process.stdout.write(current ? 'dist/ is up to date\n' : 'dist/ needs a build\n');
    return process.exit(current ? 0 : 1);
  }
  const code = ensureBuilt();
  if (code !== 0) {
    process.stderr.write(`compilation failed (exit code ${code}); fix the errors above and run the command again\n`);
    return process.exit(code);
  }
  runEntry(first, rest);
}

if (require.main === module) main(process.argv.slice(2));

module.exports = { sourcesHash, ensureBuilt, STAMP };
