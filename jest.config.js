/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
  },
  // The Functions host provides @azure/functions-core; outside it the embedded runtime does.
  moduleNameMapper: {
    '^@azure/functions-core$': '<rootDir>/src/local/functionsCore.ts',
  },
  globalSetup: '<rootDir>/test/globalSetup.ts',
  globalTeardown: '<rootDir>/test/globalTeardown.ts',
  // A test fails on a wrong result, not on a slow machine: the limit only stops a hung test.
  testTimeout: 1_800_000,
  maxWorkers: 2,
};
