/**
 * Starts one in-memory Azurite per jest worker, on free ports, before any test runs.
 * Integration tests reach theirs through `testStore()` in test/helpers/azurite.ts.
 */
import { startAzurite, AzuriteHandle } from '../src/local/azurite';

declare global {
  var __TRIAGE_AZURITES__: AzuriteHandle[] | undefined;
}

export default async function globalSetup(): Promise<void> {
  const workers = 2;
  const handles = await Promise.all(Array.from({ length: workers }, () => startAzurite({})));
  globalThis.__TRIAGE_AZURITES__ = handles;
  process.env.TRIAGE_TEST_AZURITE = JSON.stringify(handles.map((h) => h.connectionString));
}
