import { ConfigError, loadConfig, SETTINGS } from '../../src/config';

const base = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c.profile).toBe('mnist');
    expect(c.xraySize).toBe(128);
    expect(c.retrainSchedule).toBe('0 0 2 * * *');
    expect(c.backend).toBeUndefined();
    expect(c.storage).toEqual({ kind: 'connectionString', connectionString: 'UseDevelopmentStorage=true' });
  });

  it.each([
    ['TRIAGE_PROFILE', 'ct', 'one of mnist, xray'],
    ['TRIAGE_XRAY_SIZE', '12', 'an integer from 16 to 2048'],
    ['TRIAGE_XRAY_SIZE', '224px', 'an integer from 16 to 2048'],
    ['TRIAGE_MAX_PIXELS', '0', 'an integer from 1'],
    ['RETRAIN_SCHEDULE', '0 2 * * *', 'six fields'],
    ['RETRAIN_MIN_NEW_LABELS', '-3', 'an integer from 1'],
    ['TRIAGE_BACKEND', 'gpu', 'one of tensorflow, wasm, cpu'],
    ['TRIAGE_LOCAL_CONCURRENCY', '1000', 'an integer from 1 to 64'],
  ])('rejects %s=%s naming the key, the value and the expected form', (key, value, expected) => {
    let err: unknown;
    try {
      loadConfig({ ...base, [key]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain(key);
    expect(msg).toContain(JSON.stringify(value));
    expect(msg).toContain(expected);
  });

  it('names the storage setting when no connection is configured', () => {
    expect(() => loadConfig({})).toThrow(/AzureWebJobsStorage is missing/);
  });

  it('never echoes a connection string that fails validation', () => {
    expect(() => loadConfig({ AzureWebJobsStorage: 'secret-garbage' })).toThrow(/<hidden>/);
    try {
      loadConfig({ AzureWebJobsStorage: 'secret-garbage' });
    } catch (e) {
      expect((e as Error).message).not.toContain('secret-garbage');
    }
  });

  it('accepts an identity-based connection with a client id', () => {
    const c = loadConfig({
      AzureWebJobsStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
      AzureWebJobsStorage__clientId: '00000000-1111-2222-3333-444444444444',
    });
    expect(c.storage).toEqual({
      kind: 'identity',
      blobServiceUri: 'https://acct.blob.core.windows.net',
      clientId: '00000000-1111-2222-3333-444444444444',
    });
    expect(() => loadConfig({ AzureWebJobsStorage__blobServiceUri: 'http://acct.example.com' })).toThrow(
      /blobServiceUri/,
    );
    expect(() =>
      loadConfig({
        AzureWebJobsStorage__blobServiceUri: 'https://a.blob.core.windows.net',
        AzureWebJobsStorage__clientId: 'me',
      }),
    ).toThrow(/clientId/);
  });

  it('documents every key in local.settings.json and the README', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const local = require('../../local.settings.json') as { Values: Record<string, string> };
    expect(() => loadConfig(local.Values)).not.toThrow();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const readme = (require('node:fs') as typeof import('node:fs')).readFileSync(
      require.resolve('../../README.md'),
      'utf8',
    );
    for (const s of SETTINGS) expect(readme).toContain(s.key);
  });
});
