/**
 * One embedded runtime per data folder: two Azurites on the same database files both write them
 * and lose each other's writes. `npm start` takes `runtime.lock` in the folder (created with O_EXCL)
 * and a second start is refused, naming the holder's PID and URLs. A lock left by a runtime that
 * was killed (its PID is gone) is taken over once the Azurite it started has exited too (that
 * Azurite ends when its parent does, see azuriteParentWatch.js).
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';

export interface LockHolder {
  pid: number;
  started: string;
  azuritePid?: number;
  /** Azurite's blob endpoint. */
  storage?: string;
  /** The HTTP functions' base URL. */
  http?: string;
}

export class DataDirLockedError extends Error {
  constructor(
    message: string,
    readonly holder: LockHolder,
  ) {
    super(message);
    this.name = 'DataDirLockedError';
  }
}

export interface DataLock {
  readonly file: string;
  /** Adds what the holder started (Azurite's PID and URL, the HTTP URL) for whoever is refused. */
  update(info: Omit<LockHolder, 'pid' | 'started'>): void;
  release(): void;
}

export interface LockOptions {
  /** How long to wait for the Azurite of a killed holder to exit. Default 120 s. */
  waitForOrphanMs?: number;
  /** Whether a process is alive (tests). Default: signal 0. */
  isAlive?: (pid: number) => boolean;
}

export function lockFile(dataDir: string): string {
  return path.join(dataDir, 'runtime.lock');
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockHolder>;
    return typeof v.pid === 'number' && typeof v.started === 'string' ? (v as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

function describe(h: LockHolder): string {
  const urls = [
    h.storage !== undefined ? `storage ${h.storage}` : undefined,
    h.http !== undefined ? `HTTP ${h.http}` : undefined,
  ].filter((x) => x !== undefined);
  return `PID ${h.pid}${urls.length > 0 ? ` (${urls.join(', ')})` : ''}, started ${h.started}`;
}

/** Takes the data folder's lock for this process, or throws DataDirLockedError naming its holder. */
export async function acquireDataLock(dataDir: string, opts: LockOptions = {}): Promise<DataLock> {
  const alive = opts.isAlive ?? processAlive;
  const file = lockFile(dataDir);
  mkdirSync(dataDir, { recursive: true });
  const me: LockHolder = { pid: process.pid, started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readHolder(file);
      if (holder !== undefined && alive(holder.pid)) {
        throw new DataDirLockedError(
          `The data folder ${dataDir} is in use by another embedded runtime: ${describe(holder)}. Stop it first (Ctrl-C in its terminal, or kill ${holder.pid}).`,
          holder,
        );
      }
      if (holder?.azuritePid !== undefined && alive(holder.azuritePid)) {
        const deadline = Date.now() + (opts.waitForOrphanMs ?? 120_000);
        while (alive(holder.azuritePid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
        if (alive(holder.azuritePid)) {
          throw new DataDirLockedError(
            `The data folder ${dataDir} is still open in Azurite PID ${holder.azuritePid} (${holder.storage ?? 'unknown URL'}), started by runtime PID ${holder.pid}, which is gone. Stop it first (kill ${holder.azuritePid}).`,
            holder,
          );
        }
      }
      // The holder is gone (killed) and so is its Azurite, or the lock is unreadable: take it over.
      rmSync(file, { force: true });
      continue;
    }
    try {
      writeSync(fd, JSON.stringify(me, null, 2) + '\n');
    } finally {
      closeSync(fd);
    }
    let current = me;
    let released = false;
    const lock: DataLock = {
      file,
      update(info) {
        current = { ...current, ...info };
        writeFileSync(file, JSON.stringify(current, null, 2) + '\n');
      },
      release() {
        if (released) return;
        released = true;
        if (readHolder(file)?.pid === process.pid) rmSync(file, { force: true });
      },
    };
    return lock;
  }
  throw new Error(`Could not take the lock ${file}: other starts keep taking it.`);
}
