/**
 * Azurite from the npm package as a child process: it listens on the port it reports, answers the
 * Blob API for the well-known development account, and is gone once stopped.
 */
import { startAzurite, DEV_ACCOUNT } from '../src';

describe('startAzurite', () => {
  it.each([true, false])('serves the Blob API in memory (CPU fixes preloaded: %s), and stops', async (tuned) => {
    const azurite = await startAzurite({ tuned });
    try {
      expect(azurite.blobEndpoint).toBe(`http://127.0.0.1:${azurite.port}/${DEV_ACCOUNT}`);
      expect(azurite.connectionString).toContain(`BlobEndpoint=${azurite.blobEndpoint};`);
      // Unsigned, so refused, but by Azurite's Blob API (its error document), not by a missing server.
      const res = await fetch(`${azurite.blobEndpoint}?comp=list`);
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('<Code>AuthorizationFailure</Code>');
    } finally {
      await azurite.stop();
    }
    await expect(azurite.exited).resolves.toBeDefined();
    await expect(fetch(`${azurite.blobEndpoint}?comp=list`)).rejects.toThrow();
  });
});
