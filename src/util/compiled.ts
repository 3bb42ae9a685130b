/**
 * The compiled JavaScript of one of the project's modules, for what runs in another process or
 * thread (the local trainer, worker threads): the file itself when this code runs compiled from
 * dist/; when it runs from the TypeScript sources (jest), the same path under dist/, which
 * `npm install` builds and the tests' setup brings up to date (scripts/run.js), so every child runs
 * the code of the sources. No TypeScript is compiled at run time.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The repository's root: above src/util/ (sources) or dist/src/util/ (compiled). */
const ROOT = path.resolve(__dirname, ...(__filename.endsWith('.ts') ? ['..', '..'] : ['..', '..', '..']));

/**
 * `file` (a module path with or without .ts/.js; relative paths from the repository's root) as
 * the compiled .js to load: itself when it is under dist/ already, else its twin under dist/.
 * Throws when that file is missing (no build yet).
 */
export function compiledPath(file: string, root: string = ROOT): string {
  const abs = path.resolve(root, file).replace(/\.(ts|js)$/, '');
  const dist = path.join(root, 'dist');
  const compiled = abs.startsWith(dist + path.sep) ? `${abs}.js` : path.join(dist, path.relative(root, abs)) + '.js';
  if (!fs.existsSync(compiled))
    throw new Error(`${path.relative(root, compiled)} does not exist: build first (npm run build)`);
  return compiled;
}
