/**
 * The embedded runtime against real Azurite: every upload ends in exactly one terminal record,
 * changed re-uploads are processed again, two runtimes never duplicate or tear a record, and an
 * Azurite restart in the middle of a batch loses nothing.
 */
import diagnostics from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ClientRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { app, InvocationContext, Timer } from '@azure/functions';
import { Config, loadConfig } from '../../../src/config';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import { startAzurite, type LoadedFunction } from '@image-triage/local-functions-host';
import { BlobStore, sha256 } from '../../../src/storage/blobStore';
import { CONTAINERS, paths, uploadNameFromPreprocessed, uploadNameFromRecord } from '../../../src/storage/layout';
import { SOURCE_SHA_KEY } from '../../../src/storage/records/write';
import { readPreprocessedRecord } from '../../../src/storage/records/preprocessed';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { badInputs, digitPng } from '../../helpers/images';
import { PATIENT, TS, imageElements, le16, ramp, writeDicom } from '../../unit/imaging/fixtures';

// A timer registered the way functions/ registers them, on a schedule read from a setting.
const timerFired: Date[] = [];
app.timer('testHeartbeat', {
  schedule: '%TEST_HEARTBEAT_SCHEDULE%',
  handler: (_t: Timer, _c: InvocationContext) => {
    timerFired.push(new Date());
  },
});

function configFor(connectionString: string, extra: Record<string, string> = {}): Config {
  return loadConfig({
    AzureWebJobsStorage: connectionString,
    TRIAGE_LOCAL_POLL_MS: '50',
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_LOCAL_CONCURRENCY: '4',
    ...extra,
  });
}

const settings = {
  TEST_HEARTBEAT_SCHEDULE: '0 0 0 1 1 *',
  RETRAIN_SCHEDULE: '0 0 2 * * *',
  SWEEP_SCHEDULE: '0 0 0 1 1 *',
};

async function terminalRecords(store: BlobStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const add = (name: string | undefined, kind: string) => {
    if (name === undefined) return;
    out.set(name, [...(out.get(name) ?? []), kind]);
  };
  for await (const e of store.list(CONTAINERS.preprocessed)) add(uploadNameFromPreprocessed(e.name), 'preprocessed');
  for await (const e of store.list(CONTAINERS.rejected)) add(uploadNameFromRecord(e.name), 'rejected');
  return out;
}

async function uploadDigits(store: BlobStore, n: number, prefix: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < n; i++) files.set(`${prefix}/digit ${i} ü.png`, await digitPng(28 + (i % 5) * 20, { seed: i }));
  await Promise.all([...files].map(([name, data]) => store.put(CONTAINERS.uploads, name, data)));
  return files;
}

describe('embedded runtime', () => {
  let store: BlobStore;
  beforeEach(async () => {
    store = await freshStore();
  });

  it('turns 100 uploads, bad ones among them, into exactly one terminal record each and leaves uploads untouched', async () => {
    const bad = await badInputs();
    const good = await uploadDigits(store, 100 - bad.length, 'batch 1');
    for (const b of bad) await store.put(CONTAINERS.uploads, b.name, b.data);
    const before = new Map<string, string>();
    for await (const e of store.list(CONTAINERS.uploads)) before.set(e.name, e.etag);

    const rt = await EmbeddedRuntime.start({ config: configFor(testConnectionString()), settings, log: quietLog });
    try {
      await rt.waitForIdle();
    } finally {
      await rt.stop();
    }

    const records = await terminalRecords(store);
    expect(records.size).toBe(100);
    for (const [name, kinds] of records)
      expect({ name, kinds }).toEqual({
        name,
        kinds: [bad.some((b) => b.name === name) ? 'rejected' : 'preprocessed'],
      });
    for (const b of bad) {
      const r = await store.getJson<{ code: string; message: string; upload: string }>(
        CONTAINERS.rejected,
        paths.rejected(b.name),
      );
      expect(r?.value).toMatchObject({ code: b.code, upload: b.name });
      expect(r?.value.message.length).toBeGreaterThan(10);
    }
    for (const [name, data] of good) {
      const meta = await readPreprocessedRecord(store, name);
      expect(meta?.upload).toBe(name);
      expect(meta?.source.sha256).toBe(sha256(data));
      expect(meta?.source).toMatchObject({ format: 'png', bytes: data.length });
      expect(meta?.profile).toEqual({ name: 'mnist', version: expect.any(String) });
      expect(meta?.quality).toMatchObject({ blank: false });
    }
    const after = new Map<string, string>();
    for await (const e of store.list(CONTAINERS.uploads)) after.set(e.name, e.etag);
    expect(after).toEqual(before);
    expect(rt.statistics.poisoned).toBe(0);
  });

  it('keeps the whole preprocessing record on the .npy, with DICOM tags intact and no patient data', async () => {
    const dicom = writeDicom(TS.explicitLE, imageElements({ rows: 64, cols: 48, bitsAllocated: 16, bitsStored: 12 }), {
      native: le16(ramp(48, 64, 4096)),
    });
    const name = 'ward 7/thorax é.dcm';
    await store.put(CONTAINERS.uploads, name, dicom);
    const rt = await EmbeddedRuntime.start({
      config: configFor(testConnectionString(), { TRIAGE_PROFILE: 'xray' }),
      settings,
      log: quietLog,
    });
    try {
      await rt.waitForIdle();
    } finally {
      await rt.stop();
    }
    const record = await readPreprocessedRecord(store, name);
    expect(record).toMatchObject({
      upload: name,
      pixels: `preprocessed/${name}.npy`,
      source: { sha256: sha256(dicom), bytes: dicom.length, format: 'dicom', width: 48, height: 64 },
      profile: { name: 'xray' },
      dicom: {
        modality: 'CT',
        photometricInterpretation: 'MONOCHROME2',
        transferSyntax: TS.explicitLE,
        transferSyntaxName: 'Explicit VR Little Endian',
        bitsStored: 12,
      },
      time: expect.any(String),
    });
    const head = await store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
    for (const secret of Object.values(PATIENT)) expect(JSON.stringify(head?.metadata)).not.toContain(secret);
    expect(await store.head(CONTAINERS.preprocessed, paths.legacyPreprocessedMeta(name))).toBeUndefined();
  });

  it('still reads the preprocessing records of the older layout (a .json beside the .npy)', async () => {
    const legacy = {
      upload: 'old.png',
      source: { sha256: 'a'.repeat(64), bytes: 3 },
      profile: { name: 'mnist', version: '1.0.0' },
    };
    await store.put(CONTAINERS.preprocessed, paths.preprocessed('old.png'), Buffer.from('npy'));
    await expect(readPreprocessedRecord(store, 'old.png')).rejects.toThrow(/has no preprocessing record/);
    await store.putJson(CONTAINERS.preprocessed, paths.legacyPreprocessedMeta('old.png'), legacy);
    expect(await readPreprocessedRecord(store, 'old.png')).toEqual(legacy);
    expect(await readPreprocessedRecord(store, 'never-uploaded.png')).toBeUndefined();
  });

  it('processes a changed re-upload again, and the newest bytes decide the one terminal record', async () => {
    const rt = await EmbeddedRuntime.start({ config: configFor(testConnectionString()), settings, log: quietLog });
    try {
      const name = 'reupload/x.png';
      await store.put(CONTAINERS.uploads, name, await digitPng(40, { seed: 1 }));
      await rt.waitForIdle();
      const first = await store.head(CONTAINERS.preprocessed, paths.preprocessed(name));

      const second = await digitPng(60, { seed: 2 });
      await store.put(CONTAINERS.uploads, name, second);
      await rt.waitForIdle();
      const again = await store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
      expect(again?.metadata[SOURCE_SHA_KEY]).toBe(sha256(second));
      expect(again?.etag).not.toBe(first?.etag);

      // Now the same name with broken bytes: the rejection replaces the preprocessed image.
      await store.put(CONTAINERS.uploads, name, Buffer.from('garbage, not a picture'));
      await rt.waitForIdle();
      expect((await terminalRecords(store)).get(name)).toEqual(['rejected']);

      // And fixed again: back to exactly one preprocessed record.
      await store.put(CONTAINERS.uploads, name, second);
      await rt.waitForIdle();
      expect((await terminalRecords(store)).get(name)).toEqual(['preprocessed']);
    } finally {
      await rt.stop();
    }
  });

  it('finds uploads that arrive from outside while a backlog drains (the scan waits for the queue, not forever)', async () => {
    // Concurrency 1: more than 10 queued blobs is a backlog, during which scans wait.
    const rt = await EmbeddedRuntime.start({
      config: configFor(testConnectionString(), { TRIAGE_LOCAL_CONCURRENCY: '1' }),
      settings,
      log: quietLog,
    });
    try {
      await uploadDigits(store, 30, 'backlog');
      const deadline = Date.now() + 60_000;
      while (rt.statistics.queued <= 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(rt.statistics.queued).toBeGreaterThan(10);
      await uploadDigits(store, 10, 'during-backlog');
      await rt.waitForIdle(30_000); // well before the longest wait for a scan (60 s)
      const records = await terminalRecords(store);
      expect(records.size).toBe(40);
      for (const kinds of records.values()) expect(kinds).toEqual(['preprocessed']);
    } finally {
      await rt.stop();
    }
  });

  it('delivers what its functions wrote with the written bytes, and a version written during a run after that run', async () => {
    const seen: string[] = [];
    let rt: EmbeddedRuntime | undefined;
    const chain: LoadedFunction = {
      name: 'chain',
      trigger: { kind: 'blob', path: 'chain/{name}', container: 'chain', connection: 'AzureWebJobsStorage' },
      triggerBinding: { type: 'blobTrigger', direction: 'in', name: 'blob', path: 'chain/{name}' },
      callback: async (blob: unknown) => {
        const text = (blob as Buffer).toString('utf8');
        seen.push(text);
        // While this invocation runs, two newer versions: only the newest is delivered, after it.
        if (text === 'v1' && rt !== undefined) {
          await rt.deps.store.put('chain', 'x', 'v2');
          await rt.deps.store.put('chain', 'x', 'v3');
        }
      },
    };
    await store.container('chain').createIfNotExists();
    await store.put('chain', 'x', 'v1');
    const reads: string[] = [];
    const onRequest = (msg: unknown) => {
      const req = (msg as { request: ClientRequest }).request;
      if (req.method === 'GET' && /\/chain\/x(\?|$)/.test(req.path)) reads.push(req.path);
    };
    diagnostics.subscribe('http.client.request.start', onRequest);
    try {
      rt = await EmbeddedRuntime.start({
        config: configFor(testConnectionString()),
        settings,
        functions: [chain],
        log: quietLog,
      });
      await rt.waitForIdle();
    } finally {
      diagnostics.unsubscribe('http.client.request.start', onRequest);
      await rt?.stop();
    }
    expect(seen).toEqual(['v1', 'v3']);
    expect(reads).toHaveLength(1); // v1, uploaded from outside; v3 came with its write
  });

  it('runs two runtimes on one Azurite without duplicate or torn records', async () => {
    const a = await EmbeddedRuntime.start({
      config: configFor(testConnectionString()),
      settings,
      instanceId: 'A',
      log: quietLog,
    });
    const b = await EmbeddedRuntime.start({
      config: configFor(testConnectionString()),
      settings,
      instanceId: 'B',
      log: quietLog,
    });
    try {
      const files = await uploadDigits(store, 40, 'both');
      await Promise.all([a.waitForIdle(), b.waitForIdle()]);
      const records = await terminalRecords(store);
      expect(records.size).toBe(40);
      for (const kinds of records.values()) expect(kinds).toEqual(['preprocessed']);
      for (const [name, data] of files) {
        expect((await readPreprocessedRecord(store, name))?.source.sha256).toBe(sha256(data));
      }
      // Both did real work: the scans overlapped rather than one runtime doing everything.
      expect(a.statistics.invocations + b.statistics.invocations).toBeGreaterThanOrEqual(40);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('keeps receipts across a restart, so nothing delivered before is delivered again', async () => {
    await uploadDigits(store, 5, 'receipts');
    const first = await EmbeddedRuntime.start({ config: configFor(testConnectionString()), settings, log: quietLog });
    await first.waitForIdle();
    await first.stop();
    expect(first.statistics.invocations).toBe(10); // preprocess and infer for each upload
    const second = await EmbeddedRuntime.start({ config: configFor(testConnectionString()), settings, log: quietLog });
    try {
      await second.waitForIdle();
      expect(second.statistics.invocations).toBe(0);
      await uploadDigits(store, 1, 'receipts-later');
      await second.waitForIdle();
      expect(second.statistics.invocations).toBe(2);
    } finally {
      await second.stop();
    }
  });

  it('fires timers from the NCRONTAB setting and serves HTTP functions', async () => {
    timerFired.length = 0;
    const rt = await EmbeddedRuntime.start({
      config: configFor(testConnectionString()),
      settings: { ...settings, TEST_HEARTBEAT_SCHEDULE: '*/1 * * * * *' },
      log: quietLog,
    });
    try {
      await uploadDigits(store, 3, 'status');
      await rt.waitForIdle();
      const deadline = Date.now() + 10_000;
      while (timerFired.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(timerFired.length).toBeGreaterThanOrEqual(2);

      const res = await fetch(`http://127.0.0.1:${rt.httpPort}/api/status`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { uploads: number; preprocessed: number; pendingPreprocess: number };
      expect(body).toMatchObject({ uploads: 3, preprocessed: 3, pendingPreprocess: 0 });
      expect((await fetch(`http://127.0.0.1:${rt.httpPort}/api/nothing-here`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${rt.httpPort}/api/status`, { method: 'DELETE' })).status).toBe(405);
    } finally {
      await rt.stop();
    }
  });

  it('refuses to start when a schedule setting is missing', async () => {
    await expect(
      EmbeddedRuntime.start({ config: configFor(testConnectionString()), settings: {}, log: quietLog }),
    ).rejects.toThrow(/TEST_HEARTBEAT_SCHEDULE/);
  });
});

describe('embedded runtime across an Azurite restart', () => {
  it('loses nothing when Azurite stops and comes back in the middle of a batch', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'triage-azurite-'));
    let azurite = await startAzurite({ location: dir });
    const port = azurite.port;
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
    await store.ensureContainers();
    const rt = await EmbeddedRuntime.start({
      config: configFor(azurite.connectionString, { TRIAGE_LOCAL_CONCURRENCY: '2' }),
      settings,
      log: quietLog,
    });
    try {
      const files = await uploadDigits(store, 60, 'restart');
      // Let part of the batch through, then pull the storage out from under the runtime.
      const deadline = Date.now() + 60_000;
      while ((await store.count(CONTAINERS.preprocessed)) < 10 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      await azurite.stop();
      await new Promise((r) => setTimeout(r, 1500));
      azurite = await startAzurite({ location: dir, port });
      await rt.waitForIdle(180_000);
      const records = await terminalRecords(store);
      expect(records.size).toBe(files.size);
      for (const kinds of records.values()) expect(kinds).toEqual(['preprocessed']);
      expect(rt.statistics.poisoned).toBe(0);
    } finally {
      await rt.stop();
      await azurite.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
