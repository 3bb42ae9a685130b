// Lint: typescript-eslint's type-aware rules, nothing about formatting (Prettier's business), and the
// layer rule of docs/architecture.md: no module imports from a layer above its own. The workspace
// packages (packages/*) are the lowest layers: they import nothing outside themselves, and the rest
// of the repository imports them only by name (their entry point).
import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/**
 * The layers, top first. A module may import from its own layer and from any layer below it; an
 * import from a layer above is an error. `dir` is a folder (with its subfolders), `file` one file.
 */
const LAYERS = [
  [{ dir: 'functions' }, { dir: 'src/cli' }, { dir: 'bench' }],
  [{ dir: 'src/local' }],
  [{ dir: 'src/handlers' }],
  [{ dir: 'src/jobs' }],
  [{ file: 'src/composition.ts' }],
  [{ dir: 'src/triage' }],
  [{ dir: 'src/storage/records' }],
  [{ dir: 'src/registry' }],
  [{ dir: 'src/ml' }],
  [{ dir: 'src/imaging' }],
  [{ dir: 'src/storage', without: ['records'] }],
  [{ file: 'src/config.ts' }],
  [{ dir: 'src/util' }],
];

/** The workspace packages: each its own lowest layer, importing nothing outside its own folder. */
const PACKAGES = ['packages/tfjs-wasm-kernels', 'packages/local-functions-host'];

/** For everything outside packages/: a package is imported by its name, never by its files. */
const PACKAGE_ENTRY_ONLY = [
  {
    regex: '(^|/)packages/[^/]+/src(/|$)',
    message:
      'Import a workspace package by its name (its entry point), not its files (docs/architecture.md, "Layers").',
  },
  {
    regex: '^@image-triage/[^/]+/.',
    message: 'Import a workspace package by its name alone: its entry point is its only public interface.',
  },
];

/** Glue the handlers share; any other sibling import inside src/handlers/ is a handler importing another. */
const HANDLER_GLUE = ['http', 'context'];

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const target = (unit) => unit.dir ?? unit.file.replace(/\.ts$/, '');

/** The import specifier (a regex) that reaches `to` from a file `depth` folders below `fromDir`. */
function specifierOf(fromDir, depth, to) {
  const here = path.posix.join(fromDir, ...Array.from({ length: depth }, (_, i) => `sub${i}`));
  const rel = path.posix.relative(here, to);
  return `^${escape(rel.startsWith('.') ? rel : `./${rel}`)}(\\.[jt]s)?(/|$)`;
}

/** One config block per layer unit and folder depth (flat config replaces, not merges, rule options). */
function layerBlocks() {
  const blocks = [
    { files: ['test/**/*.ts'], rules: { 'no-restricted-imports': ['error', { patterns: PACKAGE_ENTRY_ONLY }] } },
  ];
  LAYERS.forEach((units, rank) => {
    const above = LAYERS.slice(0, rank).flat();
    for (const unit of units) {
      const fromDir = unit.dir ?? path.posix.dirname(unit.file);
      for (let depth = 0; depth < (unit.file ? 1 : 3); depth++) {
        const files = unit.file ? [unit.file] : [`${unit.dir}/${'*/'.repeat(depth)}*.ts`];
        const patterns = [
          ...above.map((u) => ({
            regex: specifierOf(fromDir, depth, target(u)),
            message: `${target(u)} is a higher layer than ${target(unit)} (docs/architecture.md, "Layers").`,
          })),
          ...PACKAGE_ENTRY_ONLY,
        ];
        if (unit.dir === 'src/handlers' && depth === 0) {
          patterns.push({
            regex: `^\\./(?!(${HANDLER_GLUE.join('|')})$)`,
            message: `A handler never imports another handler; shared code goes down a layer (only ${HANDLER_GLUE.join(', ')} are shared glue).`,
          });
        }
        const ignores = (unit.without ?? []).map((sub) => `${unit.dir}/${sub}/**`);
        blocks.push({
          files,
          ...(ignores.length > 0 ? { ignores } : {}),
          rules: { 'no-restricted-imports': ['error', { patterns }] },
        });
      }
    }
  });
  for (const pkg of PACKAGES) {
    for (const sub of ['src', 'test']) {
      for (let depth = 0; depth < 3; depth++) {
        const patterns = [
          {
            // Out of the package's folder: the product, another package, anything of the repository.
            regex: `^${escape('../'.repeat(depth + 2))}`,
            message: `${pkg} is a lowest layer: it imports nothing outside its own folder (docs/architecture.md, "Layers").`,
          },
          {
            regex: '^@image-triage/',
            message: `${pkg} stands alone: it imports no other workspace package.`,
          },
        ];
        blocks.push({
          files: [`${pkg}/${sub}/${'*/'.repeat(depth)}*.ts`],
          rules: { 'no-restricted-imports': ['error', { patterns }] },
        });
      }
    }
  }
  return blocks;
}

export default tseslint.config(
  {
    ignores: ['dist/**', 'packages/*/dist/**', 'node_modules/**', 'coverage/**', 'web/**', '.azurite*/**', 'infra/**'],
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `_`-prefixed names are deliberately unused (dropped fields of a rest destructuring, fixed signatures).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      // An async function without await is how an interface that wants a Promise is met here.
      '@typescript-eslint/require-await': 'off',
      // Name and setting checks refuse control characters on purpose.
      'no-control-regex': 'off',
    },
  },
  {
    // jest's asymmetric matchers (expect.any, expect.stringMatching) are typed `any`.
    files: ['test/**/*.ts', 'packages/*/test/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // Drives LokiJS and Azurite internals, which have no types, through the untyped preload module.
    files: ['packages/local-functions-host/test/azuritePreload.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    plugins: { '@typescript-eslint': tseslint.plugin },
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        __dirname: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
      },
    },
  },
  { files: ['**/*.mjs'], languageOptions: { sourceType: 'module' } },
  ...layerBlocks(),
  prettier,
);
