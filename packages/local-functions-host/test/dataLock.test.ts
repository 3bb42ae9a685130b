/**
 * One host per data folder: the lock names its holder to whoever is refused, is released by its
 * holder only, and is taken over from a holder that is gone once that holder's Azurite is gone too.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { acquireDataLock, DataDirLockedError, lockFile } from '../src';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'data-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('acquireDataLock', () => {
  it('refuses a second holder, naming the first and its URLs, until the first releases it', async () => {
    const lock = await acquireDataLock(dir);
    expect(JSON.parse(readFileSync(lockFile(dir), 'utf8'))).toMatchObject({ pid: process.pid });
    lock.update({ azuritePid: 12345, storage: 'http://127.0.0.1:10000/devstoreaccount1' });
    const refused = await acquireDataLock(dir).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DataDirLockedError);
    expect((refused as DataDirLockedError).holder).toMatchObject({ pid: process.pid, azuritePid: 12345 });
    expect((refused as Error).message).toContain(
      `PID ${process.pid} (storage http://127.0.0.1:10000/devstoreaccount1)`,
    );
    lock.release();
    expect(existsSync(lockFile(dir))).toBe(false);
    (await acquireDataLock(dir)).release();
  });

  it('takes over the lock of a holder that is gone, and of an unreadable lock', async () => {
    writeFileSync(lockFile(dir), JSON.stringify({ pid: 999_999, started: '2026-01-01T00:00:00Z' }));
    const lock = await acquireDataLock(dir, { isAlive: () => false });
    expect(JSON.parse(readFileSync(lockFile(dir), 'utf8'))).toMatchObject({ pid: process.pid });
    lock.release();
    writeFileSync(lockFile(dir), 'not json');
    (await acquireDataLock(dir)).release();
  });

  it("waits for a gone holder's Azurite, and refuses while it still runs", async () => {
    const azuritePid = 424_242;
    writeFileSync(lockFile(dir), JSON.stringify({ pid: 999_999, started: '2026-01-01T00:00:00Z', azuritePid }));
    const still = (pid: number) => pid === azuritePid;
    await expect(acquireDataLock(dir, { isAlive: still, waitForOrphanMs: 300 })).rejects.toThrow(
      `still open in Azurite PID ${azuritePid}`,
    );
    let checks = 0;
    const exitsSoon = (pid: number) => pid === azuritePid && ++checks < 3; // alive twice, then gone
    const lock = await acquireDataLock(dir, { isAlive: exitsSoon, waitForOrphanMs: 60_000 });
    expect(checks).toBeGreaterThanOrEqual(3);
    lock.release();
  });
});
