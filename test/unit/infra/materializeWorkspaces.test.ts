/**
 * scripts/materialize-workspaces.js (`npm run build:azure`, run by Azure's remote build): a workspace
 * package linked into node_modules becomes a plain folder with what the package publishes, which a
 * fresh Node process then loads by name, even once packages/ is gone.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './bicep';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- plain JavaScript, run as it is by npm
const { materialize, workspaceDirs } = require('../../../scripts/materialize-workspaces.js') as {
  materialize: (root: string) => string[];
  workspaceDirs: (root: string) => string[];
};

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/** A repository with one workspace package, built (dist/) and linked as npm links it. */
function linkedRepo(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'materialize-'));
  write(path.join(root, 'package.json'), JSON.stringify({ name: 'app', workspaces: ['packages/*'] }));
  const pkg = path.join(root, 'packages', 'lib');
  write(
    path.join(pkg, 'package.json'),
    JSON.stringify({ name: '@scope/lib', main: 'dist/index.js', files: ['dist', 'README.md'] }),
  );
  write(path.join(pkg, 'dist', 'index.js'), 'exports.answer = () => 42;\n');
  write(path.join(pkg, 'src', 'index.ts'), 'export const answer = () => 42;\n');
  fs.mkdirSync(path.join(root, 'node_modules', '@scope'), { recursive: true });
  fs.symlinkSync(path.join('..', '..', 'packages', 'lib'), path.join(root, 'node_modules', '@scope', 'lib'));
  return root;
}

/** What a new Node process started in `root` gets from `require(name)`. */
function requireIn(root: string, name: string): string {
  const r = spawnSync(
    process.execPath,
    ['-e', `process.stdout.write(String(require(${JSON.stringify(name)}).answer()))`],
    {
      cwd: root,
      encoding: 'utf8',
    },
  );
  return r.status === 0 ? r.stdout : `exit ${r.status}: ${r.stderr}`;
}

describe('materialize-workspaces', () => {
  it('replaces the link with a folder of the published files, which loads by name without packages/', () => {
    const root = linkedRepo();
    try {
      expect(materialize(root)).toEqual(['@scope/lib']);
      const dir = path.join(root, 'node_modules', '@scope', 'lib');
      expect(fs.lstatSync(dir).isSymbolicLink()).toBe(false);
      expect(fs.readdirSync(dir).sort()).toEqual(['dist', 'package.json']); // no src/; no README in this package
      expect(materialize(root)).toEqual([]); // a folder already: nothing to do
      fs.rmSync(path.join(root, 'packages'), { recursive: true });
      expect(requireIn(root, '@scope/lib')).toBe('42');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses a package that is not built, and leaves its link as it was', () => {
    const root = linkedRepo();
    try {
      fs.rmSync(path.join(root, 'packages', 'lib', 'dist'), { recursive: true });
      expect(() => materialize(root)).toThrow(/packages\/lib\/dist\/index\.js is missing: build first/);
      expect(fs.lstatSync(path.join(root, 'node_modules', '@scope', 'lib')).isSymbolicLink()).toBe(true);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it("finds this repository's packages, which `npm run build:azure` builds, then copies", () => {
    expect(workspaceDirs(REPO_ROOT).map((d) => path.relative(REPO_ROOT, d))).toEqual([
      path.join('packages', 'local-functions-host'),
      path.join('packages', 'tfjs-wasm-kernels'),
    ]);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts['build:azure']).toBe('node scripts/run.js --build && node scripts/materialize-workspaces.js');
  });
});
