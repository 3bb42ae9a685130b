/** @type {import('jest').Config} */
// This package's tests alone (`npm test` here, or `npm test -w <name>` from the repository root); the
// repository's own `npm test` runs them too, with everything else.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }],
  },
  // A test fails on a wrong result, not on a slow machine: the limit only stops a hung test.
  testTimeout: 600_000,
};
