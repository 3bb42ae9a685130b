/**
 * The LokiJS query planner preloaded into Azurite: the same documents in the same order as plain
 * LokiJS, for Azurite's query shapes, over a collection that went through inserts, updates,
 * removals and a batch insert (which rebuilds the indices); the URI template cache; and HEAD
 * responses that keep their connection reusable.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { azuritePreloadPath } from '../src/azurite';
import {
  cachedPlan,
  installDispatchMatchCache,
  installHeadKeepAlive,
  installLokiInPlaceRemoval,
  installLokiQueryPlanner,
  planQuery,
  shapeProblems,
} from '../src/azuritePreload';

const preloadPath = azuritePreloadPath();
const azuriteDir = path.dirname(require.resolve('azurite/package.json'));

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
function freshLoki(): any {
  let loki: any;
  jest.isolateModules(() => {
    loki = require('lokijs');
  });
  return loki;
}

/** Azurite's blobs collection, as LokiBlobMetadataStore creates it. */
function blobCollection(Loki: any): any {
  const db = new Loki('test.db', { persistenceMethod: 'memory' });
  return db.addCollection('$BLOBS_COLLECTION$', { indices: ['accountName', 'containerName', 'name', 'snapshot'] });
}

/** A deterministic pseudo-random sequence (xorshift). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

const ACCOUNTS = ['devstoreaccount1', 'other'];
const CONTAINERS = ['uploads', 'preprocessed', 'predictions'];

/** Applies the same operations to each collection (they get the same $loki ids). */
function workload(colls: any[], seed: number): void {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const doc = (i: number) => ({
    accountName: r() < 0.9 ? ACCOUNTS[0] : ACCOUNTS[1],
    containerName: pick(CONTAINERS),
    name: `batch/${i % 300}.png${r() < 0.5 ? '.json' : ''}`,
    snapshot: r() < 0.15 ? `2026-11-28T00:00:${String(i % 60).padStart(2, '0')}.0000000Z` : '',
    isCommitted: r() < 0.95,
    properties: { etag: `"0x${i.toString(16)}"` },
  });
  for (let i = 0; i < 2500; i++) {
    const op = r();
    const d = doc(i);
    if (op < 0.7) {
      for (const c of colls) c.insert({ ...d, properties: { ...d.properties } });
    } else if (op < 0.85) {
      // update: rewrite one existing document's etag (same one in each collection)
      const victim = colls[0].data[Math.floor(r() * colls[0].data.length)];
      if (victim === undefined) continue;
      for (const c of colls) {
        const mine = c.get(victim.$loki);
        mine.properties = { etag: `"u${i}"` };
        mine.isCommitted = !mine.isCommitted;
        c.update(mine);
      }
    } else if (op < 0.97) {
      // remove, the way Azurite replaces a blob: findOne, then remove
      const q = { accountName: d.accountName, containerName: d.containerName, name: d.name, snapshot: d.snapshot };
      const found = colls.map((c) => c.findOne(q));
      expect(found.map((f) => f?.$loki)).toEqual(found.map(() => found[0]?.$loki));
      colls.forEach((c, k) => {
        if (found[k]) c.remove(found[k]);
      });
    } else {
      // a batch insert: LokiJS rebuilds every index afterwards
      const batch = Array.from({ length: 20 }, (_, j) => doc(i * 100 + j));
      for (const c of colls) c.insert(batch.map((b) => ({ ...b, properties: { ...b.properties } })));
    }
  }
}

function ids(docs: any[]): number[] {
  return docs.map((d) => d.$loki as number);
}

describe('LokiJS query planner', () => {
  const plainLoki = freshLoki();
  const plannedLoki = freshLoki();
  installLokiQueryPlanner(plannedLoki);
  installLokiQueryPlanner(plannedLoki); // idempotent
  const plain = blobCollection(plainLoki);
  const planned = blobCollection(plannedLoki);
  workload([plain, planned], 42);

  it('loaded two separate LokiJS modules and patched only one', () => {
    expect(plannedLoki.Resultset.prototype.find).not.toBe(plainLoki.Resultset.prototype.find);
    expect(plain.data.length).toBeGreaterThan(1000);
    expect(ids(planned.data)).toEqual(ids(plain.data));
  });

  it('moves the most selective indexed string equality to the front', () => {
    const q = { accountName: 'devstoreaccount1', containerName: 'uploads', name: 'batch/7.png', snapshot: '' };
    const plan = planQuery(planned, q);
    expect(plan).toBeDefined();
    expect(Object.keys(plan?.query ?? {})[0]).toBe('name');
    expect(plan?.query).toEqual(q);
    expect(plan?.dataOrder).toBe(false);
    // Single keys, operators and already selective first keys stay as they are.
    expect(planQuery(planned, { name: 'batch/7.png' })).toBeUndefined();
    expect(planQuery(planned, { $and: [{ name: 'a' }, { accountName: 'b' }] })).toBeUndefined();
    expect(planQuery(planned, { name: 'batch/7.png', accountName: 'devstoreaccount1' })).toBeUndefined();
    expect(planQuery(planned, { accountName: { $gte: 'a' }, name: 'batch/7.png' })).toBeUndefined();
    // An unindexed first key scans in storage order: the plan says to restore it.
    expect(planQuery(planned, { isCommitted: true, name: 'batch/7.png' })?.dataOrder).toBe(true);
  });

  it('does not keep using a key that was selective only for one value (an empty container)', () => {
    const coll = blobCollection(freshLoki());
    for (let i = 0; i < 500; i++) coll.insert({ accountName: 'a', containerName: 'big', name: `n/${i}`, snapshot: '' });
    const first = (q: Record<string, unknown>) => Object.keys(cachedPlan(coll, q)?.query ?? q)[0];
    // In the empty container, containerName matches nothing: as good as name for this query (the
    // plan may pick either and is remembered for the shape).
    first({ accountName: 'a', containerName: 'empty', name: 'n/1', snapshot: '' });
    // The same shape in the big container must not scan it.
    for (let i = 0; i < 10; i++)
      expect(first({ accountName: 'a', containerName: 'big', name: `n/${i}`, snapshot: '' })).toBe('name');
    expect(first({ accountName: 'a', containerName: 'empty', name: 'n/1', snapshot: '' })).toBe('name');
  });

  it('finds the same documents in the same order as plain LokiJS for every query shape Azurite uses', () => {
    const r = rng(7);
    const queries: Record<string, unknown>[] = [];
    for (let i = 0; i < 400; i++) {
      const account = r() < 0.8 ? ACCOUNTS[0] : ACCOUNTS[1];
      const container = CONTAINERS[Math.floor(r() * CONTAINERS.length)];
      const name = `batch/${Math.floor(r() * 320)}.png${r() < 0.5 ? '.json' : ''}`;
      const snapshot = r() < 0.2 ? `2026-11-28T00:00:${String(Math.floor(r() * 60)).padStart(2, '0')}.0000000Z` : '';
      queries.push(
        { accountName: account, containerName: container, name, snapshot }, // blob lookups
        { accountName: account, containerName: container, name }, // without snapshot: several matches
        { accountName: account, name: container }, // container lookups (no match here)
        { accountName: account, containerName: container }, // listing a container
        { name: { $regex: `^batch/${Math.floor(r() * 30)}` }, accountName: account, containerName: container }, // listing with a prefix
        { isCommitted: r() < 0.5, containerName: container, name }, // unindexed first key
        { accountName: account, containerName: container, name: 'no-such-blob', snapshot: '' },
      );
    }
    let multi = 0;
    for (const q of queries) {
      const want = ids(plain.find(q));
      expect(ids(planned.find(q))).toEqual(want);
      expect(planned.findOne(q)?.$loki).toEqual(plain.findOne(q)?.$loki);
      expect(ids(planned.chain().find(q).data())).toEqual(want);
      if (want.length > 1) multi++;
    }
    // The comparison covered queries with several matches, where order matters.
    expect(multi).toBeGreaterThan(100);
  });

  it('stays equivalent through further writes', () => {
    workload([plain, planned], 99);
    for (const name of ['batch/1.png', 'batch/2.png.json', 'batch/299.png']) {
      for (const containerName of CONTAINERS) {
        const q = { accountName: ACCOUNTS[0], containerName, name };
        expect(ids(planned.find(q))).toEqual(ids(plain.find(q)));
      }
    }
  });
});

describe('LokiJS in-place removal for collections with distinct index values', () => {
  it('leaves data, ids and indices exactly as a rebuild does, through inserts, updates and removals of every size', () => {
    const plainLoki = freshLoki();
    const patchedLoki = freshLoki();
    const rebuilds = [0, 0];
    [plainLoki, patchedLoki].forEach((Loki: any, k) => {
      const original = Loki.Collection.prototype.ensureAllIndexes;
      Loki.Collection.prototype.ensureAllIndexes = function (this: any, force?: boolean) {
        rebuilds[k] = (rebuilds[k] ?? 0) + 1;
        return original.call(this, force);
      };
    });
    installLokiInPlaceRemoval(patchedLoki, (coll: any) => coll.name === '$EXTENTS_COLLECTION$');
    const make = (Loki: any) =>
      new Loki('x.db', { persistenceMethod: 'memory' }).addCollection('$EXTENTS_COLLECTION$', { indices: ['id'] });
    const colls = [make(plainLoki), make(patchedLoki)];
    const r = rng(3);
    const uuid = () =>
      Array.from({ length: 4 }, () =>
        Math.floor(r() * 2 ** 32)
          .toString(16)
          .padStart(8, '0'),
      ).join('-');
    const live: string[] = [];
    let removedInPlace = 0;
    let largeBatches = 0;
    const insert = (step: number) => {
      const doc = { id: uuid(), size: step, locationId: 'x' };
      live.push(doc.id);
      for (const c of colls) c.insert({ ...doc });
    };
    for (let i = 0; i < 600; i++) insert(i);
    for (let step = 0; step < 2000; step++) {
      const op = r();
      if (op < 0.5 || live.length < 150) {
        insert(step);
      } else if (op < 0.65) {
        const id = live[Math.floor(r() * live.length)];
        for (const c of colls) {
          const d = c.findOne({ id });
          d.size = -step;
          c.update(d);
        }
      } else if (op < 0.995) {
        // what Azurite's garbage collector does: findAndRemove by id, one or a few at a time
        const ids = Array.from(
          { length: r() < 0.9 ? 1 : 2 + Math.floor(r() * 5) },
          () => live.splice(Math.floor(r() * live.length), 1)[0],
        );
        for (const c of colls) c.findAndRemove(ids.length === 1 ? { id: ids[0] } : { id: { $in: ids } });
        removedInPlace += ids.length;
      } else {
        // a large batch still goes through LokiJS's rebuild
        const ids = live.splice(Math.floor(r() * (live.length - 100)), 100);
        for (const c of colls) c.findAndRemove({ id: { $in: ids } });
        largeBatches++;
      }
      if (step % 100 === 0 || step === 1999) {
        expect(colls[1].binaryIndices.id.values).toEqual(colls[0].binaryIndices.id.values);
        expect(colls[1].binaryIndices.id.dirty).toBe(false);
        expect(ids(colls[1].data)).toEqual(ids(colls[0].data));
        expect(colls[1].idIndex).toEqual(colls[0].idIndex);
      }
    }
    expect(removedInPlace).toBeGreaterThan(400);
    // Only the large batches were rebuilt with the patch; every removal was without it.
    expect(rebuilds[1]).toBe(largeBatches);
    expect(rebuilds[0]).toBeGreaterThan(300);
    for (const id of live.slice(0, 50)) expect(colls[1].findOne({ id })?.$loki).toBe(colls[0].findOne({ id })?.$loki);
  });

  it('leaves collections with repeated index values to LokiJS', () => {
    const Loki = freshLoki();
    const seen: number[] = [];
    const original = Loki.Collection.prototype.ensureAllIndexes;
    Loki.Collection.prototype.ensureAllIndexes = function (this: any, force?: boolean) {
      seen.push(this.data.length);
      return original.call(this, force);
    };
    installLokiInPlaceRemoval(Loki, (coll: any) => coll.name === '$EXTENTS_COLLECTION$');
    const blobs = blobCollection(Loki);
    for (let i = 0; i < 10; i++) blobs.insert({ accountName: 'a', containerName: 'c', name: `n${i}`, snapshot: '' });
    blobs.findAndRemove({ name: 'n3' });
    expect(seen).toEqual([9]); // rebuilt, as LokiJS does
  });
});

describe('URI template cache', () => {
  it('gives one parsed template per string, which matches as a fresh one does', () => {
    // In a plain node process: the cache replaces the module in Node's own require cache.
    const script = `
      const { installUriTemplateCache } = require(${JSON.stringify(preloadPath)});
      const modulePath = require.resolve('uri-templates', { paths: [${JSON.stringify(azuriteDir)}] });
      const original = require(modulePath);
      installUriTemplateCache(modulePath);
      const cached = require(modulePath);
      const uri = '/uploads/x%20y.png';
      const t = '/{containerName}/{blob}';
      console.log(JSON.stringify({
        replaced: cached !== original,
        same: cached(t) === cached(t) && new cached(t) === cached(t),
        results: ['/{containerName}/{blob}', '/{containerName}', '/'].map((x) => [cached(x).fromUri(uri, { strict: true }), original(x).fromUri(uri, { strict: true })]),
      }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as {
      replaced: boolean;
      same: boolean;
      results: [unknown, unknown][];
    };
    expect(out.replaced).toBe(true);
    expect(out.same).toBe(true);
    for (const [cached, fresh] of out.results) expect(cached).toEqual(fresh);
    expect(out.results[0]?.[0]).toEqual({ containerName: 'uploads', blob: 'x y.png' });
  });
});

describe('dispatch match cache', () => {
  it("answers as Azurite's isURITemplateMatch does for every operation's template", () => {
    const blobDir = path.join(azuriteDir, 'dist', 'src', 'blob', 'generated');
    const { isURITemplateMatch } = require(path.join(blobDir, 'utils', 'utils.js')) as {
      isURITemplateMatch: (url: string, template: string) => boolean;
    };
    const specs = (
      require(path.join(blobDir, 'artifacts', 'specifications.js')) as { default: Record<string, { path?: string }> }
    ).default;
    const templates = [
      ...new Set(
        Object.values(specs).map((s) => (s.path === undefined ? '/' : s.path.startsWith('/') ? s.path : `/${s.path}`)),
      ),
    ];
    expect(templates.length).toBeGreaterThan(2);
    const utils = { isURITemplateMatch: isURITemplateMatch as unknown };
    expect(installDispatchMatchCache(utils)).toBe(true);
    expect(installDispatchMatchCache(utils)).toBe(false); // already installed
    const cached = utils.isURITemplateMatch as (url: string, template: string) => boolean;
    let matches = 0;
    for (const url of ['/', '/container', '/container/blob', '/uploads/batch%201/x.png', '/$logs']) {
      for (const t of templates) {
        const want = isURITemplateMatch(url, t);
        if (want) matches++;
        expect(cached(url, t)).toBe(want);
        expect(cached(url, t)).toBe(want);
      }
    }
    expect(matches).toBeGreaterThan(0);
  });
});

describe('HEAD keep-alive', () => {
  /** HEAD requests in a row on one keep-alive agent: [status, content-length, reused socket] each. */
  async function heads(paths: string[]): Promise<[number, string | undefined, boolean][]> {
    const server = http.createServer((req, res) => {
      res.statusCode = req.url === '/missing' ? 404 : 200;
      if (req.url === '/sized') res.setHeader('Content-Length', '1234');
      if (req.url === '/given') res.writeHead(200, { 'content-length': '7' });
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const out: [number, string | undefined, boolean][] = [];
    try {
      for (const p of paths) {
        out.push(
          await new Promise((resolve, reject) => {
            const req = http.request(
              { port: (server.address() as AddressInfo).port, host: '127.0.0.1', path: p, method: 'HEAD', agent },
              (res) => {
                res.resume();
                res.on('end', () =>
                  setImmediate(() => resolve([res.statusCode ?? 0, res.headers['content-length'], req.reusedSocket])),
                );
              },
            );
            req.on('error', reject);
            req.end();
          }),
        );
      }
    } finally {
      agent.destroy();
      await new Promise((r) => server.close(r));
    }
    return out;
  }

  it("gives bodiless HEAD answers a zero length so Node's client reuses the connection, and leaves given lengths alone", async () => {
    // As published: after a HEAD answer without a length the client opens a new connection.
    expect((await heads(['/missing', '/missing'])).map((h) => h[2])).toEqual([false, false]);
    const uninstall = installHeadKeepAlive(http);
    try {
      expect(installHeadKeepAlive(http)).toBeInstanceOf(Function); // idempotent
      expect(await heads(['/missing', '/missing', '/sized', '/given', '/missing'])).toEqual([
        [404, '0', false],
        [404, '0', true],
        [200, '1234', true],
        [200, '7', true],
        [404, '0', true],
      ]);
    } finally {
      uninstall();
    }
    expect((await heads(['/missing', '/missing'])).map((h) => h[1])).toEqual([undefined, undefined]);
  });
});

describe('shape check of the internals the patches touch', () => {
  const main = path.join(azuriteDir, 'dist', 'src', 'blob', 'main.js');
  /** Runs `body` in a fresh node process with the preload's exports as `p` and Azurite's main script as `main`; returns what it prints, parsed. */
  function inChild(body: string): any {
    const script = `const p = require(${JSON.stringify(preloadPath)}); const main = ${JSON.stringify(main)}; const Module = require('node:module'); ${body}`;
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
  }

  it('finds every one as the patches were written against in the pinned packages, which package.json pins exactly', () => {
    const r = inChild(
      `process.stdout.write(JSON.stringify({ problems: p.shapeProblems(p.azuriteInternals(Module.createRequire(main))), names: Object.keys(p.EXPECTED_SHAPE) }))`,
    );
    expect(r.problems).toEqual([]);
    expect(r.names.length).toBeGreaterThan(10);
    // This package's pin (the repository pins Azurite's lokijs and uri-templates: test/unit/local/azuritePins.test.ts).
    const pkg = require('../package.json');
    expect(pkg.dependencies.azurite).toBe(require('azurite/package.json').version);
  });

  it('installs nothing when one differs: Azurite as published, and one line that says what differs', () => {
    const run = (expected: string) =>
      inChild(`
        const http = require('node:http');
        const fromAzurite = Module.createRequire(main);
        const Loki = fromAzurite('lokijs');
        const before = { find: Loki.Resultset.prototype.find, remove: Loki.Collection.prototype.removeBatchByPositions, writeHead: http.ServerResponse.prototype.writeHead, match: fromAzurite('./generated/utils/utils.js').isURITemplateMatch };
        const warnings = [];
        const installed = p.installIntoAzurite(main, ${expected}, (l) => warnings.push(l));
        const same = before.find === Loki.Resultset.prototype.find && before.remove === Loki.Collection.prototype.removeBatchByPositions && before.writeHead === http.ServerResponse.prototype.writeHead && before.match === fromAzurite('./generated/utils/utils.js').isURITemplateMatch;
        process.stdout.write(JSON.stringify({ installed, warnings, untouched: same }));`);
    const wrong = run(`{ ...p.EXPECTED_SHAPE, 'lokijs Resultset.prototype.find': '0123456789abcdef' }`);
    expect(wrong.installed).toBe(false);
    expect(wrong.untouched).toBe(true);
    expect(wrong.warnings).toHaveLength(1);
    expect(wrong.warnings[0]).toMatch(
      /^image-triage azurite preload: not installed, Azurite runs as published: lokijs Resultset\.prototype\.find changed \(source [0-9a-f]{16}, the patches know 0123456789abcdef\)$/,
    );
    // The same process with the true shape installs everything: the check is what decides.
    const right = run('p.EXPECTED_SHAPE');
    expect(right).toEqual({ installed: true, warnings: [], untouched: false });
  });

  it('names a missing internal, one that is not a function, and one whose source changed', () => {
    const problems = shapeProblems(
      { a: undefined, b: 42, c: () => 1, d: () => 2 },
      { a: 'function', b: 'function', c: '0000000000000000', d: 'function' },
    );
    expect(problems).toEqual([
      'a is missing',
      'b is a number, not a function',
      expect.stringMatching(/^c changed \(source [0-9a-f]{16}, the patches know 0000000000000000\)$/),
    ]);
  });
});
