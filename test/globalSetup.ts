/**
 * Starts one in-memory Azurite per jest worker, on free ports, before any test runs.
 * Integration tests reach theirs through `testStore()` in test/helpers/azurite.ts.
 * First brings dist/ up to date with the sources (scripts/run.js: nothing to do unless a source
 * changed since the last build): child processes and worker threads run the compiled code.
 */
import { startAzurite, AzuriteHandle } from '@image-triage/local-functions-host';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ensureBuilt } = require('../scripts/run.js') as { ensureBuilt: () => number };

declare global {
  var __TRIAGE_AZURITES__: AzuriteHandle[] | undefined;
}

export default async function globalSetup(): Promise<void> {
  if (ensureBuilt() !== 0)
    throw new Error('the sources do not compile (see above); the tests run the compiled code in child processes');
  const workers = 2;
  const handles = await Promise.all(Array.from({ length: workers }, () => startAzurite({})));
  globalThis.__TRIAGE_AZURITES__ = handles;
  process.env.TRIAGE_TEST_AZURITE = JSON.stringify(handles.map((h) => h.connectionString));
}
