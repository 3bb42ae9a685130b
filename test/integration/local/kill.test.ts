/**
 * `npm start` (src/local/main.ts, run as its own process on a persisted data folder) under SIGKILL:
 * its Azurite does not outlive it, a second start on the held folder is refused naming the holder,
 * a start after the kill takes the folder over and every upload acknowledged before the kill is
 * there and gets its record; a clean stop removes runtime.json and the lock.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { devConnectionString, LockHolder, lockFile, processAlive } from '@image-triage/local-functions-host';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { compiledPath } from '../../../src/util/compiled';
import { digitPng } from '../../helpers/images';

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startRuntime(dataDir: string): Started {
  // The compiled entry point, as `npm start` runs it (jest's global setup builds dist/ from the sources).
  const child = spawn(process.execPath, [compiledPath('src/local/main.ts')], {
    env: {
      ...process.env,
      AzureWebJobsStorage: 'UseDevelopmentStorage=true',
      TRIAGE_LOCAL_DATA_DIR: dataDir,
      TRIAGE_LOCAL_HTTP_PORT: '0',
      SWEEP_SCHEDULE: '*/5 * * * * *',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** Resolves when `done()` holds, polling; rejects with `what` once the process `watch` has exited or after `maxPolls`. */
async function until(
  what: string,
  done: () => boolean | Promise<boolean>,
  maxPolls = 2400,
  watch?: Started,
): Promise<void> {
  let exited = false;
  void watch?.exited.then(() => (exited = true));
  for (let i = 0; i < maxPolls; i++) {
    if (await done()) return;
    if (exited) throw new Error(`${what}: the runtime exited. Output:\n${watch?.output() ?? ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not after ${maxPolls} polls. Output:\n${watch?.output() ?? ''}`);
}

function holder(dataDir: string): LockHolder {
  return JSON.parse(readFileSync(lockFile(dataDir), 'utf8')) as LockHolder;
}

describe('the embedded runtime killed', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'triage-kill-'));
  const started: Started[] = [];
  afterAll(async () => {
    for (const s of started) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('takes its Azurite with it, refuses a second start on its folder, and loses no acknowledged upload', async () => {
    const a = startRuntime(dataDir);
    started.push(a);
    await until('first start', () => /HTTP functions on/.test(a.output()), 2400, a);
    const first = holder(dataDir);
    expect(first.pid).toBe(a.child.pid);
    expect(first.azuritePid).toBeDefined();
    const azuritePid = first.azuritePid ?? 0;
    const port = Number(/:(\d+)\//.exec(first.storage ?? '')?.[1]);

    // Uploads acknowledged by storage while the runtime works.
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: devConnectionString(port) });
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      const name = `kill/${i}.png`;
      await store.put(CONTAINERS.uploads, name, await digitPng(28, { seed: i }));
      names.push(name);
    }

    // A second start on the held folder is refused, naming the holder.
    const b = startRuntime(dataDir);
    started.push(b);
    expect(await b.exited).toBe(3);
    expect(b.output()).toContain(`PID ${first.pid}`);
    expect(b.output()).toContain(first.storage ?? 'storage URL');
    expect(processAlive(azuritePid)).toBe(true);

    a.child.kill('SIGKILL');
    await a.exited;
    await until("the killed runtime's Azurite exits", () => !processAlive(azuritePid), 2400);
    expect(existsSync(lockFile(dataDir))).toBe(true); // SIGKILL runs no clean-up: the next start takes it over

    const c = startRuntime(dataDir);
    started.push(c);
    await until('start after the kill', () => /HTTP functions on/.test(c.output()), 2400, c);
    const second = holder(dataDir);
    expect(second.pid).toBe(c.child.pid);
    const store2 = BlobStore.fromConnection({
      kind: 'connectionString',
      connectionString: devConnectionString(Number(/:(\d+)\//.exec(second.storage ?? '')?.[1])),
    });
    for (const n of names) expect(await store2.head(CONTAINERS.uploads, n)).toBeDefined();
    await until(
      'every acknowledged upload has its record',
      async () => {
        for (const n of names) {
          if (
            (await store2.head(CONTAINERS.preprocessed, paths.preprocessed(n))) === undefined &&
            (await store2.head(CONTAINERS.rejected, paths.rejected(n))) === undefined
          )
            return false;
        }
        return true;
      },
      2400,
      c,
    );

    c.child.kill('SIGTERM');
    expect(await c.exited).toBe(0);
    expect(existsSync(lockFile(dataDir))).toBe(false);
    expect(existsSync(path.join(dataDir, 'runtime.json'))).toBe(false);
    expect(processAlive(second.azuritePid ?? 0)).toBe(false);
  }, 1_800_000);
});
