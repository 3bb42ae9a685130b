/**
 * `npm start` when TRIAGE_LOCAL_HTTP_PORT's port is taken: one configuration error naming the
 * setting and the port, the exit code of every configuration error (2), and no Azurite started or
 * left running (nor the data folder's lock). The runtime itself refuses the same way (the port can be taken between the check
 * and the start).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config';
import { checkHttpPort, EmbeddedRuntime } from '../../../src/local/runtime';
import { quietLog, testConnectionString } from '../../helpers/azurite';
import { runTs } from '../../helpers/tsProcess';

describe('HTTP port in use', () => {
  let taken: http.Server;
  let port: number;
  let dir: string;
  beforeAll(async () => {
    taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    port = (taken.address() as { port: number }).port;
    dir = mkdtempSync(path.join(os.tmpdir(), 'triage-port-'));
  });
  afterAll(async () => {
    await new Promise<void>((r) => taken.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('npm start says so in one line naming TRIAGE_LOCAL_HTTP_PORT and the port, exits 2, and starts no Azurite', async () => {
    const dataDir = path.join(dir, 'data');
    const r = await runTs('src/local/main.ts', [], {
      AzureWebJobsStorage: 'UseDevelopmentStorage=true',
      TRIAGE_LOCAL_HTTP_PORT: String(port),
      TRIAGE_LOCAL_DATA_DIR: dataDir,
    });
    expect({ code: r.code, stderr: r.stderr.trim() }).toEqual({
      code: 2,
      stderr: `Configuration error: Setting TRIAGE_LOCAL_HTTP_PORT has the value "${port}"; expected a free port: ${port} is in use by another program (stop it, or set TRIAGE_LOCAL_HTTP_PORT to another port, or 0 for any free port).`,
    });
    expect(r.stdout).not.toMatch(/Azurite/);
    // The folder's lock was taken first (a second start on a held folder names its holder, not the
    // port) and let go; Azurite, which writes its database files there, never started.
    expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
  });

  it('the check and the runtime refuse a taken port with the same ConfigError, and the runtime leaves nothing running', async () => {
    await expect(checkHttpPort(port)).rejects.toThrow(ConfigError);
    await expect(checkHttpPort(0)).resolves.toBeUndefined();
    const config = loadConfig({ AzureWebJobsStorage: testConnectionString(), TRIAGE_LOCAL_HTTP_PORT: String(port) });
    const settings = { RETRAIN_SCHEDULE: '0 0 2 * * *', SWEEP_SCHEDULE: '*/1 * * * * *' };
    const err = await EmbeddedRuntime.start({ config, settings, log: quietLog }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe('TRIAGE_LOCAL_HTTP_PORT');
    expect((err as ConfigError).value).toBe(String(port));
    // Freed once the owner lets go: a runtime on it starts and serves.
    await new Promise<void>((r) => taken.close(() => r()));
    const rt = await EmbeddedRuntime.start({ config, settings, log: quietLog });
    try {
      expect(rt.httpPort).toBe(port);
      expect((await fetch(`http://127.0.0.1:${port}/api/status`)).status).toBe(200);
    } finally {
      await rt.stop();
      taken = http.createServer();
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    }
  });
});
