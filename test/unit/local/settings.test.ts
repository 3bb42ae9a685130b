import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mergedSettings } from '../../../src/local/settings';

describe('local settings', () => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'settings-')), 'local.settings.json');
  writeFileSync(
    file,
    JSON.stringify({
      Values: {
        AzureWebJobsStorage: 'UseDevelopmentStorage=true',
        TRIAGE_PROFILE: 'xray',
        RETRAIN_SCHEDULE: '0 0 3 * * *',
      },
    }),
  );

  it('lets the environment override the file, key by key', () => {
    const s = mergedSettings({ TRIAGE_PROFILE: 'mnist' }, file);
    expect(s).toMatchObject({
      TRIAGE_PROFILE: 'mnist',
      RETRAIN_SCHEDULE: '0 0 3 * * *',
      AzureWebJobsStorage: 'UseDevelopmentStorage=true',
    });
  });

  it('drops the file storage setting when the environment names an identity-based connection', () => {
    const s = mergedSettings({ AzureWebJobsStorage__blobServiceUri: 'https://acct.blob.core.windows.net' }, file);
    expect(s.AzureWebJobsStorage).toBeUndefined();
    expect(s.AzureWebJobsStorage__blobServiceUri).toBe('https://acct.blob.core.windows.net');
  });

  it('reads nothing when there is no file', () => {
    expect(mergedSettings({}, path.join(os.tmpdir(), 'no-such-dir', 'x.json'))).toEqual({});
  });
});
