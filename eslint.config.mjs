// Lint: typescript-eslint's type-aware rules, nothing about formatting (Prettier's business), and the
// layer rule of docs/architecture.md: no module imports from a layer above its own.
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
  const blocks = [];
  LAYERS.forEach((units, rank) => {
    if (rank === 0) return;
    const above = LAYERS.slice(0, rank).flat();
    for (const unit of units) {
      const fromDir = unit.dir ?? path.posix.dirname(unit.file);
      for (let depth = 0; depth < (unit.file ? 1 : 3); depth++) {
        const files = unit.file ? [unit.file] : [`${unit.dir}/${'*/'.repeat(depth)}*.ts`];
        const patterns = above.map((u) => ({
          regex: specifierOf(fromDir, depth, target(u)),
          message: `${target(u)} is a higher layer than ${target(unit)} (docs/architecture.md, "Layers").`,
        }));
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
  return blocks;
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'web/**', '.azurite*/**', 'infra/**'] },
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
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // Drives LokiJS and Azurite internals, which have no types, through the untyped preload module.
    files: ['test/unit/local/azuritePreload.test.ts'],
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
