#!/usr/bin/env node
/**
 * Replaces each workspace package's link in node_modules (npm links workspaces: node_modules/@scope/name
 * -> ../../packages/name) with a plain folder holding what the package publishes (its package.json and
 * its `files`, e.g. dist/ and README.md), so that the app no longer depends on a symbolic link.
 *
 *   node scripts/materialize-workspaces.js [root]     (root: the repository, by default this one)
 *
 * `npm run build:azure` runs it after the build: Azure's remote build (Oryx, which Flex Consumption
 * runs for `azd deploy` because .funcignore leaves node_modules out) runs `npm install`, `npm run
 * build`, then `npm run build:azure`, and packages the result. Deployment tools have stored links as
 * small text files or dropped them; a plain folder survives any of them. Run it only on a deployment's
 * copy: afterwards the folder no longer follows edits to packages/ (`npm install` links it again).
 * Plain JavaScript, so it needs no compilation itself.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** The workspace package folders of `root`'s package.json (entries `dir` or `dir/*`). */
function workspaceDirs(root) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const dirs = [];
  for (const entry of pkg.workspaces ?? []) {
    if (entry.endsWith('/*')) {
      const parent = path.join(root, entry.slice(0, -2));
      for (const e of fs.readdirSync(parent, { withFileTypes: true })) {
        if (e.isDirectory() && fs.existsSync(path.join(parent, e.name, 'package.json')))
          dirs.push(path.join(parent, e.name));
      }
    } else {
      dirs.push(path.join(root, entry));
    }
  }
  return dirs.sort();
}

/** Replaces node_modules/<name> of each workspace package, when it is a link, by a copy; returns the names copied. */
function materialize(root) {
  const copied = [];
  for (const dir of workspaceDirs(root)) {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const link = path.join(root, 'node_modules', ...pkg.name.split('/'));
    let stat;
    try {
      stat = fs.lstatSync(link);
    } catch {
      continue; // not installed here
    }
    if (!stat.isSymbolicLink()) continue; // already a folder
    const tmp = `${link}.materializing`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    for (const item of ['package.json', ...(pkg.files ?? [])]) {
      const from = path.join(dir, item);
      // A file left out of the deployment (e.g. a README, .funcignore's *.md) is left out here too.
      if (fs.existsSync(from)) fs.cpSync(from, path.join(tmp, item), { recursive: true, dereference: true });
    }
    if (pkg.main !== undefined && !fs.existsSync(path.join(tmp, pkg.main))) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(`${path.relative(root, path.join(dir, pkg.main))} is missing: build first (npm run build)`);
    }
    fs.rmSync(link);
    fs.renameSync(tmp, link);
    copied.push(pkg.name);
  }
  return copied;
}

if (require.main === module) {
  const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
  const copied = materialize(root);
  process.stdout.write(
    copied.length > 0 ? `node_modules now holds copies of ${copied.join(', ')}\n` : 'no workspace link to replace\n',
  );
}

module.exports = { materialize, workspaceDirs };
