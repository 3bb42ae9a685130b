/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: [
    '<rootDir>/test',
    '<rootDir>/packages/tfjs-wasm-kernels/test',
    '<rootDir>/packages/local-functions-host/test',
  ],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
  },
  moduleNameMapper: {
    // The Functions host provides @azure/functions-core; outside it the local host's stand-in does.
    '^@azure/functions-core$': '<rootDir>/packages/local-functions-host/src/functionsCore.ts',
    // The workspace packages from their sources (their package.json points at the compiled dist/).
    '^@image-triage/(tfjs-wasm-kernels|local-functions-host)$': '<rootDir>/packages/$1/src/index.ts',
  },
  globalSetup: '<rootDir>/test/globalSetup.ts',
  globalTeardown: '<rootDir>/test/globalTeardown.ts',
  // A test fails on a wrong result, not on a slow machine: the limit only stops a hung test.
  testTimeout: 1_800_000,
  maxWorkers: 2,
};
