/**
 * Azurite with the preload answers what Azurite as published answers: the same operations on
 * one of each (many blobs with names repeated across containers, snapshots, overwrites,
 * conditional writes, deletes) read back, list and list with prefixes and delimiters alike.
 */
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AzuriteHandle, PRELOAD_MARKER, startAzurite } from '@image-triage/local-functions-host';
import { BlobStore } from '../../../src/storage/blobStore';

const BLOBS = 1200;
const CONTAINERS = ['alpha', 'beta'] as const;

function nameOf(i: number): string {
  return `f${i % 7}/n${String(i).padStart(4, '0')}.png`;
}

function storeOf(a: AzuriteHandle): BlobStore {
  return BlobStore.fromConnection({ kind: 'connectionString', connectionString: a.connectionString });
}

async function inParallel<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** The same writes on any Azurite; returns what was read back along the way. */
async function exercise(store: BlobStore): Promise<unknown> {
  const seen: Record<string, unknown> = {};
  for (const c of CONTAINERS) await store.container(c).createIfNotExists();
  const indices = Array.from({ length: BLOBS }, (_, i) => i);
  // The same names in both containers (every third), different bytes.
  await inParallel(indices, async (i) => {
    await store.put('alpha', nameOf(i), `alpha:${nameOf(i)}:v1`, { metadata: { n: String(i) } });
    if (i % 3 === 0) await store.put('beta', nameOf(i), `beta:${nameOf(i)}:v1`);
  });
  // Snapshots, then overwrites: the base blob and its snapshot share the name.
  const snapped = indices.filter((i) => i % 40 === 0);
  const snapshots = new Map<number, string>();
  await inParallel(snapped, async (i) => {
    const r = await store.container('alpha').getBlobClient(nameOf(i)).createSnapshot();
    snapshots.set(i, r.snapshot ?? '');
    await store.put('alpha', nameOf(i), `alpha:${nameOf(i)}:v2`);
  });
  // Conditional writes: create-only on an existing blob, If-Match with a stale ETag.
  const old = await store.head('alpha', nameOf(1));
  await store.put('alpha', nameOf(1), 'changed');
  seen.createOnExisting = await store.put('alpha', nameOf(2), 'x', { ifNoneExists: true });
  seen.staleIfMatch = await store.put('alpha', nameOf(1), 'y', { ifMatch: old?.etag ?? '' });
  seen.createNew = (await store.put('alpha', 'new/one.png', 'z', { ifNoneExists: true })).written;
  // Deletes, one with a stale ETag.
  const del = await store.head('beta', nameOf(3));
  seen.deleted = await store.deleteIfMatch('beta', nameOf(3), del?.etag ?? '');
  seen.deleteStale = await store.deleteIfMatch('alpha', nameOf(5), old?.etag ?? '');
  // Reads: every blob of both containers, the snapshots, names that do not exist.
  const reads: string[] = [];
  for (const c of CONTAINERS) {
    await inParallel(indices, async (i) => {
      const b = await store.get(c, nameOf(i));
      reads[i + (c === 'beta' ? BLOBS : 0)] =
        b === undefined ? '-' : `${b.data.toString()}|${JSON.stringify(b.metadata)}`;
    });
  }
  seen.reads = reads;
  const snapReads: string[] = [];
  for (const [i, snap] of [...snapshots].sort((a, b) => a[0] - b[0])) {
    const r = await store.container('alpha').getBlobClient(nameOf(i)).withSnapshot(snap).downloadToBuffer();
    snapReads.push(r.toString());
  }
  seen.snapshots = snapReads;
  seen.missing = [
    await store.head('alpha', 'f1/none.png'),
    await store.head('gamma-none', nameOf(1)).catch((e: unknown) => String((e as { statusCode?: number }).statusCode)),
  ];
  // Listings: flat, with prefixes, with snapshots and metadata, by hierarchy.
  const names = async (c: string, prefix?: string) => {
    const out: string[] = [];
    for await (const e of store.list(c, prefix, true)) out.push(`${e.name}|${e.size}|${JSON.stringify(e.metadata)}`);
    return out;
  };
  seen.listAlpha = await names('alpha');
  seen.listBeta = await names('beta');
  seen.listPrefix = await names('alpha', 'f3/');
  seen.listPrefixNarrow = await names('beta', 'f0/n00');
  seen.listNone = await names('alpha', 'nothing/');
  const withSnapshots: string[] = [];
  for await (const b of store.container('alpha').listBlobsFlat({ includeSnapshots: true, prefix: 'f0/' }))
    withSnapshots.push(`${b.name}|${b.snapshot === undefined ? '' : 'snapshot'}`);
  seen.listSnapshots = withSnapshots;
  const prefixes: string[] = [];
  for await (const item of store.container('alpha').listBlobsByHierarchy('/'))
    prefixes.push(item.kind === 'prefix' ? `prefix:${item.name}` : item.name);
  seen.hierarchy = prefixes;
  return seen;
}

describe('Azurite preload', () => {
  let plain: AzuriteHandle;
  let tuned: AzuriteHandle;
  const plainLines: string[] = [];
  const tunedLines: string[] = [];
  beforeAll(async () => {
    [plain, tuned] = await Promise.all([
      startAzurite({ tuned: false, onLine: (l) => plainLines.push(l) }),
      startAzurite({ onLine: (l) => tunedLines.push(l) }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([plain?.stop(), tuned?.stop()]);
  });

  it('is loaded into the Azurite that startAzurite starts, and only when asked to be', () => {
    expect(tunedLines).toContain(PRELOAD_MARKER);
    expect(plainLines).not.toContain(PRELOAD_MARKER);
    // Everything it installs was found in this Azurite version (it warns otherwise).
    expect(tunedLines.filter((l) => l.includes('preload') && l !== PRELOAD_MARKER)).toEqual([]);
  });

  it('answers the same as Azurite as published, with many blobs, repeated names and snapshots', async () => {
    const [want, got] = await Promise.all([exercise(storeOf(plain)), exercise(storeOf(tuned))]);
    expect(got).toEqual(want);
    // The comparison covered what it should.
    const w = want as {
      reads: string[];
      snapshots: string[];
      listPrefix: string[];
      listSnapshots: string[];
      hierarchy: string[];
    };
    expect(w.reads.filter((r) => r.startsWith('beta:')).length).toBe(Math.ceil(BLOBS / 3) - 1);
    expect(w.snapshots.every((s) => s.endsWith(':v1'))).toBe(true);
    expect(w.listPrefix.length).toBeGreaterThan(100);
    expect(w.listSnapshots.filter((s) => s.endsWith('|snapshot')).length).toBeGreaterThan(0);
    expect(w.hierarchy).toContain('prefix:f0/');
  });

  it('keeps the connection after a HEAD of a missing blob (as published, the client closes it)', async () => {
    /** For each 404 HEAD: its Content-Length, and whether its socket is still open after the next request. */
    async function afterMissingHead(a: AzuriteHandle): Promise<[string | undefined, boolean][]> {
      const store = storeOf(a);
      await store.container('heads').createIfNotExists();
      const out: [string | undefined, boolean][] = [];
      let head: { socket: Socket; length: string | undefined } | undefined;
      const onFinish = (msg: unknown) => {
        const { request, response } = msg as { request: ClientRequest; response: IncomingMessage };
        if (request.method === 'HEAD' && request.socket !== null)
          head = { socket: request.socket, length: response.headers['content-length'] };
      };
      diagnostics.subscribe('http.client.response.finish', onFinish);
      try {
        for (let i = 0; i < 3; i++) {
          expect(await store.head('heads', `missing-${i}`)).toBeUndefined();
          await store.put('heads', `after-${i}`, 'x');
          out.push([head?.length, head?.socket.destroyed === false]);
        }
      } finally {
        diagnostics.unsubscribe('http.client.response.finish', onFinish);
      }
      return out;
    }
    expect(await afterMissingHead(tuned)).toEqual([
      ['0', true],
      ['0', true],
      ['0', true],
    ]);
    expect(await afterMissingHead(plain)).toEqual([
      [undefined, false],
      [undefined, false],
      [undefined, false],
    ]);
  });

  it('steps aside when an internal it patches changed: Azurite as published, one line saying so', async () => {
    // What an upgrade that rewrote LokiJS's find looks like to the check: the same behaviour, other source text.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'triage-azurite-changed-'));
    const changed = path.join(dir, 'changedFind.js');
    writeFileSync(
      changed,
      `const Loki = require('node:module').createRequire(process.argv[1])('lokijs');
const original = Loki.Resultset.prototype.find;
Loki.Resultset.prototype.find = function find(query, firstOnly) { return original.call(this, query, firstOnly); };
`,
    );
    const lines: string[] = [];
    // NODE_OPTIONS' --require runs before the command line's, so before the preload.
    const stock = await startAzurite({
      onLine: (l) => lines.push(l),
      env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${changed}`.trim() },
    });
    try {
      expect(lines).not.toContain(PRELOAD_MARKER);
      expect(lines.filter((l) => l.includes('preload'))).toEqual([
        expect.stringMatching(
          /^image-triage azurite preload: not installed, Azurite runs as published: lokijs Resultset\.prototype\.find changed/,
        ),
      ]);
      const store = storeOf(stock);
      await store.container('stock').createIfNotExists();
      await store.put('stock', 'a/b.png', 'bytes', { metadata: { n: '1' } });
      expect((await store.get('stock', 'a/b.png'))?.data.toString()).toBe('bytes');
      expect(await store.head('stock', 'a/none.png')).toBeUndefined();
    } finally {
      await stock.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
