/** The sweep timer runs every 30 seconds by default: it logs a line only when it did something. */
import { buildDeps } from '../../../src/composition';
import { loadConfig } from '../../../src/config';
import { preprocessOnce } from '../../../src/handlers/preprocess';
import { inferOnce } from '../../../src/handlers/infer';
import { handleSweep } from '../../../src/handlers/sweep';
import type { Log } from '../../../src/util/log';
import { CONTAINERS } from '../../../src/storage/layout';
import { freshStore, testConnectionString } from '../../helpers/azurite';
import { digitPng } from '../../helpers/images';

const steps = { preprocess: preprocessOnce, infer: inferOnce };

describe('sweep log', () => {
  it('is silent when there was nothing to do, and says what it did when it did something', async () => {
    const store = await freshStore();
    const deps = buildDeps(loadConfig({ AzureWebJobsStorage: testConnectionString() }), { instanceId: 'sweep-test' });
    const lines: string[] = [];
    const log: Log = {
      info: (m) => void lines.push(m),
      warn: (m) => void lines.push(m),
      error: (m) => void lines.push(m),
    };
    try {
      expect(await handleSweep(steps, deps, log, { graceMs: 0 })).toEqual({
        uploadsRedriven: 0,
        uploadsClaimed: 0,
        imagesScored: 0,
        imagesClaimed: 0,
        stillWaiting: 0,
        claimsRemoved: 0,
        errors: 0,
      });
      expect(lines).toEqual([]);

      // An upload whose event never came: the sweep preprocesses it (no model yet, so it then waits).
      await store.put(CONTAINERS.uploads, 'lost/a.png', await digitPng(28));
      const r = await handleSweep(steps, deps, log, { graceMs: 0 });
      expect(r).toMatchObject({ uploadsRedriven: 1, errors: 0 });
      expect(lines.filter((l) => l.startsWith('sweep:'))).toEqual([
        `sweep: 1 uploads re-driven, 0 images scored, ${r.stillWaiting} waiting, 0 errors`,
      ]);

      lines.length = 0;
      await handleSweep(steps, deps, log, { graceMs: 0 });
      expect(lines.filter((l) => l.startsWith('sweep:'))).toEqual([]);
    } finally {
      deps.models.dispose();
    }
  });
});
