/**
 * Azurite itself killed (SIGKILL) under the embedded runtime in the middle of a batch: the
 * supervisor starts it again on the same port and data folder, the HTTP functions answer 503 with
 * Retry-After while it is down (never 500, never a hang), every upload Azurite acknowledged is
 * still there afterwards and gets its record, and the uploads that failed while it was down go
 * through once it is back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../src/config';
import { AzuriteHandle, superviseAzurite } from '@image-triage/local-functions-host';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import { BlobStore, isUnreachable } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { quietLog } from '../../helpers/azurite';
import { digitPng } from '../../helpers/images';

interface Answer {
  route: string;
  status: number;
  retryAfter: string | null;
}

async function ask(port: number, route: string): Promise<Answer> {
  // A hang fails the test here (a generous limit: a slow machine is not a hang).
  const res = await fetch(`http://127.0.0.1:${port}/api/${route}`, { signal: AbortSignal.timeout(120_000) });
  await res.arrayBuffer();
  return { route, status: res.status, retryAfter: res.headers.get('retry-after') };
}

/** Listens on the port as soon as it is free (the killed process's socket is gone), dropping every connection. */
async function holdPort(port: number, restarted: () => boolean): Promise<net.Server> {
  for (;;) {
    if (restarted()) throw new Error(`Azurite was restarted on port ${port} before the test could hold the port`);
    const server = net.createServer((socket) => socket.destroy());
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) return server;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const settings = { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' };
const ROUTES = ['status', 'worklist', 'predictions/kill/0.png'];

describe('Azurite killed under the embedded runtime', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'triage-azurite-kill-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is restarted; HTTP answers 503 with Retry-After meanwhile; no acknowledged upload is lost', async () => {
    const restarts: { oldPid: number | undefined; pid: number | undefined }[] = [];
    const azurite: AzuriteHandle = await superviseAzurite({ location: dir }, { onRestart: (e) => restarts.push(e) });
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
    await store.ensureContainers();
    const config = loadConfig({
      AzureWebJobsStorage: azurite.connectionString,
      TRIAGE_LOCAL_POLL_MS: '100',
      TRIAGE_LOCAL_HTTP_PORT: '0',
      TRIAGE_LOCAL_CONCURRENCY: '2',
    });
    const rt = await EmbeddedRuntime.start({ config, settings, log: quietLog });
    try {
      const files: [string, Buffer][] = [];
      for (let i = 0; i < 80; i++) files.push([`kill/${i}.png`, await digitPng(28, { seed: i })]);
      const acknowledged = new Set<string>();
      let refused = 0;
      // Uploads as a client sends them: one at a time per lane, again after a failure.
      let next = 0;
      const uploading = Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < files.length) {
            const [name, data] = files[next++] as [string, Buffer];
            for (;;) {
              try {
                await store.put(CONTAINERS.uploads, name, data);
                acknowledged.add(name);
                break;
              } catch (err) {
                if (!isUnreachable(err)) throw err;
                refused++;
                await new Promise((r) => setTimeout(r, 200));
              }
            }
          }
        }),
      );
      while (acknowledged.size < 20) await new Promise((r) => setTimeout(r, 10));
      const killedPid = azurite.pid ?? 0;
      const ackedBeforeKill = acknowledged.size;
      process.kill(killedPid, 'SIGKILL');
      // Azurite stays down while this test holds its port with a server that drops every
      // connection (the supervisor's restarts fail, and it tries again): what the runtime
      // answers then is what it answers while storage is unreachable.
      const holder = await holdPort(azurite.port, () => restarts.length > 0);
      expect(restarts).toHaveLength(0);
      const down: Answer[] = [];
      for (let round = 0; round < 2; round++) for (const route of ROUTES) down.push(await ask(rt.httpPort, route));
      await new Promise<void>((r) => holder.close(() => r()));
      while (restarts.length === 0) await new Promise((r) => setTimeout(r, 50));
      await uploading;
      const up: Answer[] = [];
      for (const route of ROUTES) up.push(await ask(rt.httpPort, route));

      expect(restarts).toHaveLength(1);
      expect(restarts[0]?.oldPid).toBe(killedPid);
      expect(azurite.pid).not.toBe(killedPid);
      // Down: 503 with Retry-After (GET /api/status may answer its last snapshot instead, as it says).
      for (const a of down) {
        if (a.route === 'status' && a.status === 200) continue;
        expect(a).toEqual({ route: a.route, status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
      }
      expect(down.filter((a) => a.status === 503).length).toBeGreaterThanOrEqual(4);
      // Back: answered as usual.
      expect(up.map((a) => a.status)).toEqual([200, 200, 404]);

      // Every acknowledged upload is there and gets exactly one terminal record.
      expect(acknowledged.size).toBe(files.length);
      expect(ackedBeforeKill).toBeGreaterThanOrEqual(20);
      await rt.waitForIdle(600_000);
      for (const [name] of files) {
        expect({ name, upload: (await store.head(CONTAINERS.uploads, name)) !== undefined }).toEqual({
          name,
          upload: true,
        });
        expect({
          name,
          record: (await store.head(CONTAINERS.preprocessed, paths.preprocessed(name))) !== undefined,
        }).toEqual({ name, record: true });
        expect(await store.head(CONTAINERS.rejected, paths.rejected(name))).toBeUndefined();
      }
      expect(rt.statistics.poisoned).toBe(0);
      // Uploads were refused while Azurite was down and went through once it was back.
      expect(refused).toBeGreaterThan(0);
    } finally {
      await rt.stop();
      await azurite.stop();
    }
  }, 1_800_000);
});
