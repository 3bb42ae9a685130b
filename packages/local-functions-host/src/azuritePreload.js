// @ts-check
'use strict';
/**
 * Preloaded into the Azurite child process (`node -r <this file> azurite/.../blob/main.js`) by
 * startAzurite. Plain JavaScript because the child runs it as it is, also when the tests run
 * from the TypeScript sources.
 *
 * CPU fixes inside Azurite's process that change nothing it stores or answers:
 *
 *  1. Query planning for LokiJS (Azurite's metadata store). Azurite queries its blob collection
 *     as {accountName, containerName, name, snapshot}; LokiJS uses the binary index of the
 *     query's FIRST key only and filters the rest linearly, and every blob of the account has the
 *     same accountName, so each lookup scanned every blob (CPU per request grew linearly with
 *     the account: ~1 ms at 4,000 blobs, ~5-8 ms at 20,000). The planner moves the indexed
 *     equality key whose index range is smallest (found by binary search) to the front. An AND
 *     of the same conditions matches the same documents; their order is kept too (see
 *     planQuery), so callers that take the first match get the same one.
 *
 *  2. In-place index maintenance when LokiJS removes a few documents from a collection with
 *     distinct index values (Azurite's extents): it re-sorted every index for each removal, which
 *     made Azurite's periodic garbage collection stall the service (see installLokiInPlaceRemoval).
 *
 *  3. Azurite's request dispatcher matches the request path against every operation's URI
 *     template on every request, parsing each template again (uri-templates, ~10% of its CPU).
 *     Parsed templates are immutable, so they are cached by template string, and the match
 *     answers, which depend on two strings from small sets, are remembered.
 *
 *  4. HEAD responses without a body length (Azurite's errors, e.g. the 404 of a blob that does
 *     not exist) get `Content-Length: 0`. Without it Node's HTTP client does not reuse the
 *     keep-alive connection: every such HEAD cost the client a new TCP connection (in the e2e
 *     bench, one per image). Only the length header is added; status, headers and (absent)
 *     body are Azurite's.
 *
 * And one change of when Azurite answers (not of what it stores or answers):
 *
 *  5. Acknowledge only what is saved. Azurite keeps blob and extent metadata in LokiJS databases
 *     held in memory and saved to disk every 5 s (autosave); a blob's bytes are on disk when
 *     Azurite answers, its metadata only after the next save. A killed Azurite (SIGKILL, out of
 *     memory) forgot every upload it had acknowledged since the last save: 325 of 506 in one run.
 *     Here the answer to a request that may change something (any method but GET, HEAD and
 *     OPTIONS) is held until every persisted database has been saved with that change in it:
 *     saves that the held answers wait for are grouped (LokiJS runs one save at a time and one
 *     more for everything that arrived meanwhile), so a busy Azurite saves back to back rather
 *     than once per request. In-memory Azurite (no saved database) answers as before.
 *
 * They rely on the internals of the exact versions package.json pins. At start, every function
 * they touch is checked against the source they were written for (EXPECTED_SHAPE); if any
 * differs, nothing is installed and Azurite runs as published, with one line on stderr.
 * The upstream problems behind 1 and 4: docs/upstream/.
 *
 * Exports the installers for the tests; installs itself only in an Azurite process.
 */
const Module = require('node:module');

/** Marks what this module installed, so installing twice does nothing. */
const PLANNED = Symbol.for('image-triage.azurite-preload');

/** Operators for which LokiJS uses a binary index when the key comes first in a query. */
const INDEXED_OPS = new Set(['$eq', '$aeq', '$dteq', '$gt', '$gte', '$lt', '$lte', '$in', '$between']);

/**
 * The operator LokiJS reads from a query value: plain values (and null and dates) mean $eq.
 * @param {unknown} v
 * @returns {string | undefined}
 */
function operatorOf(v) {
  if (v === null || typeof v !== 'object' || v instanceof Date) return '$eq';
  for (const k in v) if (Object.prototype.hasOwnProperty.call(v, k)) return k;
  return undefined;
}

/**
 * A better key order for a multi-key query on an unfiltered result set, or undefined to keep the
 * query as it is. Only string equalities are moved to the front (Azurite's keys are strings).
 * @param {any} coll a LokiJS Collection
 * @param {Record<string, unknown>} query
 * @returns {{ query: Record<string, unknown>, dataOrder: boolean } | undefined}
 *   dataOrder: the original query would have scanned the data in storage order (its first key has
 *   no usable index), so the planned result must be put back into that order.
 */
function planQuery(coll, query) {
  // Only adaptive indices are always current; lazily rebuilt ones are rebuilt one at a time when
  // first used, which can change the order of equal keys in that index alone.
  if (coll.adaptiveBinaryIndices !== true) return undefined;
  const keys = Object.keys(query);
  if (keys.length < 2 || keys.some((k) => k.startsWith('$') || k.includes('.'))) return undefined;
  const indices = coll.binaryIndices;
  const hasIndex = (/** @type {string} */ k) =>
    Object.prototype.hasOwnProperty.call(indices, k) && indices[k].dirty !== true;
  /** @type {Map<string, number>} */
  const counts = new Map();
  /** @type {string | undefined} */
  let best;
  let bestCount = Infinity;
  for (const k of keys) {
    const v = query[k];
    if (typeof v !== 'string' || !hasIndex(k)) continue;
    const range = coll.calculateRange('$eq', k, v);
    const count = range[1] - range[0] + 1;
    counts.set(k, count);
    if (count < bestCount) {
      best = k;
      bestCount = count;
    }
  }
  const first = /** @type {string} */ (keys[0]);
  if (best === undefined || best === first) return undefined;
  const firstCount = counts.get(first);
  let dataOrder;
  if (firstCount !== undefined) {
    // Indexed string equality first: its matches come in the order every index keeps equals in.
    if (firstCount <= 2 * bestCount + 8) return undefined; // not worth it
    dataOrder = false;
  } else if (
    !Object.prototype.hasOwnProperty.call(indices, first) ||
    !INDEXED_OPS.has(operatorOf(query[first]) ?? '')
  ) {
    dataOrder = true; // LokiJS would scan the data in storage order
  } else {
    return undefined; // a range or $in on an index orders by that key: keep it
  }
  /** @type {Record<string, unknown>} */
  const planned = { [best]: query[best] };
  for (const k of keys) if (k !== best) planned[k] = query[k];
  return { query: planned, dataOrder };
}

/** A remembered plan is used as long as its key still matches at most this many documents. */
const SELECTIVE_ENOUGH = 16;
/** A remembered "keep the query as it is" is reconsidered after this many uses (data grows). */
const REPLAN_KEEP_EVERY = 64;
/** @type {WeakMap<object, Map<string, { best: string | undefined, dataOrder: boolean, uses: number }>>} */
const planCache = new WeakMap();

/**
 * planQuery, remembered per collection and query shape (keys, string or operator per key, the
 * collection's indices): a full plan costs a few binary searches per key, more than the lookup.
 * The remembered key is checked with one binary search against each query's own value and the
 * query is planned again when that value is not selective (the best key depends on the values:
 * an empty container makes containerName look best for a moment). The part of a plan that
 * decides the order of results (dataOrder) depends on the shape only.
 * @param {any} coll
 * @param {Record<string, unknown>} query
 */
function cachedPlan(coll, query) {
  if (coll.adaptiveBinaryIndices !== true) return undefined;
  const keys = Object.keys(query);
  if (keys.length < 2) return undefined;
  let shape = Object.keys(coll.binaryIndices).join(',');
  for (const k of keys) {
    const v = query[k];
    shape += `|${k}=${typeof v === 'string' ? 's' : `o${operatorOf(v) ?? ''}`}`;
  }
  let plans = planCache.get(coll);
  if (plans === undefined) {
    plans = new Map();
    planCache.set(coll, plans);
  }
  let entry = plans.get(shape);
  let fresh = entry === undefined;
  if (entry !== undefined) {
    entry.uses++;
    if (entry.best === undefined) fresh = entry.uses >= REPLAN_KEEP_EVERY;
    else {
      const range = coll.calculateRange('$eq', entry.best, query[entry.best]);
      fresh = range[1] - range[0] + 1 > SELECTIVE_ENOUGH;
    }
  }
  if (fresh) {
    const plan = planQuery(coll, query);
    entry = {
      best: plan === undefined ? undefined : Object.keys(plan.query)[0],
      dataOrder: plan?.dataOrder ?? false,
      uses: 0,
    };
    if (plans.size < 256 || plans.has(shape)) plans.set(shape, entry);
  }
  const best = entry?.best;
  if (entry === undefined || best === undefined) return undefined;
  /** @type {Record<string, unknown>} */
  const planned = { [best]: query[best] };
  for (const k of keys) if (k !== best) planned[k] = query[k];
  return { query: planned, dataOrder: entry.dataOrder };
}

/**
 * Makes LokiJS resolve a multi-key equality query through its most selective binary index.
 *
 * Same documents, same order: with adaptive indices every index keeps equal keys in the same
 * relative order (each insert or update puts the document first among its equals in every index,
 * removals keep the order, a rebuild rebuilds all of them), so the documents matching all keys
 * come out of any of these indices in one order. A query whose first key has no index scans in
 * storage order instead; that order is restored by sorting the positions.
 * @param {any} Loki the lokijs module
 */
function installLokiQueryPlanner(Loki) {
  const proto = Loki.Resultset.prototype;
  if (proto.find[PLANNED] === true) return;
  const originalFind = proto.find;
  /**
   * @this {any}
   * @param {unknown} query
   * @param {boolean} [firstOnly]
   */
  function find(query, firstOnly) {
    if (
      this.filterInitialized ||
      query === null ||
      typeof query !== 'object' ||
      Array.isArray(query) ||
      this.collection.data.length === 0
    ) {
      return originalFind.call(this, query, firstOnly);
    }
    const plan = cachedPlan(this.collection, /** @type {Record<string, unknown>} */ (query));
    if (plan === undefined) return originalFind.call(this, query, firstOnly);
    // LokiJS evaluates a multi-key query as an $and without stopping at the first match and then
    // keeps the first row, so the full match set is computed here too.
    originalFind.call(this, plan.query, false);
    if (plan.dataOrder && this.filteredrows.length > 1)
      this.filteredrows.sort((/** @type {number} */ a, /** @type {number} */ b) => a - b);
    if (firstOnly === true && this.filteredrows.length > 1) this.filteredrows = this.filteredrows.slice(0, 1);
    return this;
  }
  Object.defineProperty(find, PLANNED, { value: true });
  proto.find = find;
}

/** Batches up to this size are removed from the indices in place instead of rebuilding them. */
const SMALL_BATCH = 64;

/**
 * LokiJS removes documents found by a query (findAndRemove, Resultset.remove) by re-sorting
 * every binary index of the collection from scratch, even for one document: O(n log n) with a
 * slow comparator. Azurite's garbage collector deletes unreferenced extents one by one that way
 * (every 10 minutes, and when it starts on a persisted account), so with 30,000 unreferenced
 * extents among 60,000 it stalled the service for a very long time (a probe saw 160 s with
 * 6,000 of 12,000).
 *
 * For collections whose indexed values are all distinct (`distinct(coll)`; Azurite's extents are
 * keyed by uuids), a small batch is taken out of each index in place instead (LokiJS's own
 * adaptive removal, O(n)): a sorted index without equal values has one order only, so the index
 * is the same as the rebuilt one. Everything else (data, ids, events, unique indices) is done by
 * LokiJS's own code as before, or, for a single document, by the same steps with splice.
 * @param {any} Loki the lokijs module
 * @param {(coll: any) => boolean} distinct
 */
function installLokiInPlaceRemoval(Loki, distinct) {
  const proto = Loki.Collection.prototype;
  if (proto.removeBatchByPositions[PLANNED] === true) return;
  const original = proto.removeBatchByPositions;
  /**
   * @this {any}
   * @param {number[]} positions
   */
  function removeBatchByPositions(positions) {
    const keys = Object.keys(this.binaryIndices);
    if (
      this.adaptiveBinaryIndices !== true ||
      keys.length === 0 ||
      positions.length === 0 ||
      positions.length > SMALL_BATCH ||
      this.DynamicViews.length > 0 ||
      !distinct(this)
    ) {
      return original.call(this, positions);
    }
    // Positions refer to the data as it is now: the indices first, then LokiJS's removal with
    // adaptive indices off (so it neither touches nor rebuilds them).
    for (const key of keys) this.adaptiveBinaryIndexRemove(positions.slice(), key);
    if (positions.length === 1) {
      removeOne(this, /** @type {number} */ (positions[0]));
      return;
    }
    this.adaptiveBinaryIndices = false;
    try {
      return original.call(this, positions);
    } finally {
      this.adaptiveBinaryIndices = true;
      for (const key of keys) this.binaryIndices[key].dirty = false;
    }
  }
  /**
   * What LokiJS's removeBatchByPositions does for one position once the binary indices are done
   * (no dynamic views here), with splice where it filters the whole data and id arrays through
   * a lookup object: the garbage collector removes extents one at a time.
   * @param {any} coll
   * @param {number} pos
   */
  function removeOne(coll, pos) {
    coll.startTransaction();
    coll.ensureId();
    const doc = coll.data[pos];
    for (const key of coll.uniqueNames) {
      const index = coll.getUniqueIndex(key);
      if (index && doc[key] !== null && doc[key] !== undefined) index.remove(doc[key]);
    }
    if (!coll.disableChangesApi || coll.events.delete.length > 1) coll.emit('delete', doc);
    coll.data.splice(pos, 1);
    if (coll.isIncremental) coll.dirtyIds.push(coll.idIndex[pos]);
    coll.idIndex.splice(pos, 1);
    coll.commit();
    coll.dirty = true;
  }
  Object.defineProperty(removeBatchByPositions, PLANNED, { value: true });
  proto.removeBatchByPositions = removeBatchByPositions;
}

/**
 * Caches parsed URI templates. The uri-templates module exports a factory (also callable with
 * `new`) whose objects are never changed after construction.
 * @param {string} modulePath resolved path of uri-templates, before its users load it
 */
function installUriTemplateCache(modulePath) {
  const original = require(modulePath);
  if (original[PLANNED] === true) return;
  const MAX = 1000;
  /** @type {Map<string, unknown>} */
  const cache = new Map();
  /** @param {string} template */
  function cachedUriTemplate(template) {
    let t = cache.get(template);
    if (t === undefined) {
      t = original(template);
      if (cache.size < MAX) cache.set(template, t);
    }
    return t;
  }
  cachedUriTemplate.prototype = original.prototype;
  Object.defineProperty(cachedUriTemplate, PLANNED, { value: true });
  const cached = require.cache[modulePath];
  if (cached !== undefined) cached.exports = cachedUriTemplate;
}

/**
 * Remembers Azurite's isURITemplateMatch(path, template) answers. Its dispatcher asks it about
 * every operation for every request, with the request's path reduced to one of three patterns
 * ("/", "/container", "/container/blob"), so the answers form a small table. The function is
 * pure (it parses the template and matches the string); other paths are answered uncached once
 * the table is full.
 * @param {{ isURITemplateMatch?: unknown }} utils the exports of Azurite's generated/utils/utils.js
 */
function installDispatchMatchCache(utils) {
  const found = utils.isURITemplateMatch;
  if (typeof found !== 'function' || /** @type {any} */ (found)[PLANNED] === true) return false;
  const original = /** @type {(url: string, template: string) => unknown} */ (found);
  const MAX = 10_000;
  /** @type {Map<string, boolean>} */
  const answers = new Map();
  /**
   * @param {string} url
   * @param {string} template
   */
  function isURITemplateMatch(url, template) {
    const key = `${url}\u0000${template}`;
    let answer = answers.get(key);
    if (answer === undefined) {
      answer = Boolean(original(url, template));
      if (answers.size < MAX) answers.set(key, answer);
    }
    return answer;
  }
  Object.defineProperty(isURITemplateMatch, PLANNED, { value: true });
  utils.isURITemplateMatch = isURITemplateMatch;
  return true;
}

/**
 * Adds `Content-Length: 0` to HEAD responses that declare neither a length nor chunked encoding
 * (see 4. above). Returns a function that undoes it.
 * @param {typeof import('node:http')} http
 */
function installHeadKeepAlive(http) {
  const proto = http.ServerResponse.prototype;
  const original = proto.writeHead;
  if (/** @type {any} */ (original)[PLANNED] === true) return () => {};
  /**
   * @this {import('node:http').ServerResponse}
   * @param {any[]} args
   */
  function writeHead(...args) {
    if (this.req?.method === 'HEAD' && !this.hasHeader('content-length') && !this.hasHeader('transfer-encoding')) {
      const given = args.find((a, i) => i > 0 && typeof a === 'object' && a !== null);
      const named =
        given === undefined ? [] : Array.isArray(given) ? given.filter((_, i) => i % 2 === 0) : Object.keys(given);
      if (!named.some((h) => /^(content-length|transfer-encoding)$/i.test(String(h))))
        this.setHeader('Content-Length', '0');
    }
    return original.apply(this, /** @type {any} */ (args));
  }
  Object.defineProperty(writeHead, PLANNED, { value: true });
  proto.writeHead = /** @type {any} */ (writeHead);
  return () => {
    proto.writeHead = original;
  };
}

/**
 * Holds the answers of requests that may change something until the change is saved (see 5.
 * above). LokiJS databases with autosave (what Azurite persists) register themselves when autosave
 * is enabled. Returns a function that undoes it.
 * @param {any} Loki the lokijs module
 * @param {typeof import('node:http')} http
 */
function installDurableAcks(Loki, http) {
  const lokiProto = Loki.prototype;
  if (lokiProto.autosaveEnable[PLANNED] === true) return () => {};
  /** @type {Set<any>} */
  const persisted = new Set();
  /** The save running for a database (it holds everything changed before it started). @type {WeakMap<any, Promise<void>>} */
  const running = new WeakMap();
  const originalEnable = lokiProto.autosaveEnable;
  const originalSave = lokiProto.saveDatabaseInternal;
  /** @this {any} @param {any[]} args */
  function autosaveEnable(...args) {
    persisted.add(this);
    return originalEnable.apply(this, args);
  }
  /** @this {any} @param {(err?: unknown) => void} [callback] */
  function saveDatabaseInternal(callback) {
    /** @type {() => void} */
    let done = () => {};
    const p = new Promise((/** @type {(v: void) => void} */ r) => (done = r));
    running.set(this, p);
    const self = this;
    return originalSave.call(this, (/** @type {unknown} */ err) => {
      if (running.get(self) === p) running.delete(self);
      done();
      if (typeof callback === 'function') callback(err);
      else if (err) throw err;
    });
  }
  Object.defineProperty(autosaveEnable, PLANNED, { value: true });
  lokiProto.autosaveEnable = autosaveEnable;
  lokiProto.saveDatabaseInternal = saveDatabaseInternal;

  /**
   * Resolves once everything this database holds now is on disk: a save that starts after now
   * when it has unsaved changes, else the save running (it started after the last change).
   * @param {any} db
   * @returns {Promise<void>}
   */
  function saved(db) {
    if (db.autosaveDirty()) {
      return new Promise((resolve) =>
        db.saveDatabase((/** @type {unknown} */ err) => {
          if (err) process.stderr.write(`image-triage azurite preload: saving ${db.filename} failed: ${String(err)}\n`);
          resolve();
        }),
      );
    }
    return running.get(db) ?? Promise.resolve();
  }

  const proto = http.ServerResponse.prototype;
  const originalEnd = proto.end;
  const HELD = Symbol('held until saved');
  /**
   * @this {any}
   * @param {any[]} args
   */
  function end(...args) {
    const method = this.req?.method;
    if (persisted.size === 0 || this[HELD] === true || method === 'GET' || method === 'HEAD' || method === 'OPTIONS')
      return originalEnd.apply(this, /** @type {any} */ (args));
    this[HELD] = true;
    void Promise.all([...persisted].map(saved)).then(() => originalEnd.apply(this, /** @type {any} */ (args)));
    return this;
  }
  proto.end = /** @type {any} */ (end);
  return () => {
    lokiProto.autosaveEnable = originalEnable;
    lokiProto.saveDatabaseInternal = originalSave;
    proto.end = originalEnd;
  };
}

/**
 * What the patches rely on, as the pinned packages have it (package.json pins azurite, and lokijs
 * and uri-templates through overrides): a fingerprint (sha-256 of the source text, 16 hex digits)
 * of every function they wrap, re-implement part of or count on, and for Node's own code just a
 * function. A package upgrade that changes any of them makes the preload step aside (stock Azurite)
 * until the patches are checked against the new code and these fingerprints renewed.
 */
const EXPECTED_SHAPE = {
  'lokijs Resultset.prototype.find': 'b603c4432bd988b2',
  'lokijs Collection.prototype.removeBatchByPositions': '15064cdbcc8f0f63',
  'lokijs Collection.prototype.calculateRange': 'd90a97625c717169',
  'lokijs Collection.prototype.adaptiveBinaryIndexRemove': '90f0194acb876a62',
  'lokijs Collection.prototype.adaptiveBinaryIndexInsert': 'e9954a6c8d7d618d',
  'lokijs Collection.prototype.adaptiveBinaryIndexUpdate': 'fddcd7912d5355cb',
  'lokijs Collection.prototype.startTransaction': 'b79e34e49d234c76',
  'lokijs Collection.prototype.ensureId': 'b197599325cf395b',
  'lokijs Collection.prototype.commit': '36ce2d14b540ff55',
  'lokijs Collection.prototype.getUniqueIndex': '9965d306ddf24356',
  'uri-templates (the module)': '2e3871fe1af60e3e',
  'azurite generated/utils/utils.js isURITemplateMatch': '3dcaf2bde4b164a2',
  'lokijs Loki.prototype.autosaveEnable': 'c47c06c0fd087ba9',
  'lokijs Loki.prototype.saveDatabaseInternal': 'a50ed6d371aeba68',
  'lokijs Loki.prototype.saveDatabase': 'b53551291792f0d3',
  'lokijs Loki.prototype.autosaveDirty': '88c0b41e99d46abf',
  'node http ServerResponse.prototype.writeHead': 'function',
  'node http ServerResponse.prototype.hasHeader': 'function',
  'node http ServerResponse.prototype.setHeader': 'function',
  'node http ServerResponse.prototype.end': 'function',
};

/**
 * sha-256 of a function's source text, 16 hex digits.
 * @param {Function} f
 */
function fingerprint(f) {
  return require('node:crypto')
    .createHash('sha256')
    .update(Function.prototype.toString.call(f))
    .digest('hex')
    .slice(0, 16);
}

/**
 * The internals the patches touch, loaded the way Azurite's script loads them (undefined where
 * a module or a member is missing), by the names of EXPECTED_SHAPE.
 * @param {(id: string) => any} fromAzurite require() as seen from Azurite's main script
 * @returns {Record<string, unknown>}
 */
function azuriteInternals(fromAzurite) {
  /** @param {() => unknown} get */
  const attempt = (get) => {
    try {
      return get();
    } catch {
      return undefined;
    }
  };
  const Loki = attempt(() => fromAzurite('lokijs'));
  const coll = /** @type {any} */ (Loki)?.Collection?.prototype;
  const res = /** @type {any} */ (Loki)?.Resultset?.prototype;
  const utils = attempt(() => fromAzurite('./generated/utils/utils.js'));
  const response = require('node:http').ServerResponse.prototype;
  return {
    'lokijs Resultset.prototype.find': res?.find,
    ...Object.fromEntries(
      [
        'removeBatchByPositions',
        'calculateRange',
        'adaptiveBinaryIndexRemove',
        'adaptiveBinaryIndexInsert',
        'adaptiveBinaryIndexUpdate',
        'startTransaction',
        'ensureId',
        'commit',
        'getUniqueIndex',
      ].map((k) => [`lokijs Collection.prototype.${k}`, coll?.[k]]),
    ),
    'uri-templates (the module)': attempt(() => fromAzurite('uri-templates')),
    'azurite generated/utils/utils.js isURITemplateMatch': /** @type {any} */ (utils)?.isURITemplateMatch,
    'node http ServerResponse.prototype.writeHead': response.writeHead,
    'node http ServerResponse.prototype.hasHeader': response.hasHeader,
    'node http ServerResponse.prototype.setHeader': response.setHeader,
    'node http ServerResponse.prototype.end': response.end,
    ...Object.fromEntries(
      ['autosaveEnable', 'saveDatabaseInternal', 'saveDatabase', 'autosaveDirty'].map((k) => [
        `lokijs Loki.prototype.${k}`,
        /** @type {any} */ (Loki)?.prototype?.[k],
      ]),
    ),
  };
}

/**
 * Where `found` differs from `expected`: one line per internal that is missing, not a function,
 * or whose source is not the one the patches were written against.
 * @param {Record<string, unknown>} found
 * @param {Record<string, string>} [expected]
 * @returns {string[]}
 */
function shapeProblems(found, expected = EXPECTED_SHAPE) {
  /** @type {string[]} */
  const problems = [];
  for (const [name, want] of Object.entries(expected)) {
    const f = found[name];
    if (typeof f !== 'function')
      problems.push(`${name} is ${f === undefined ? 'missing' : `a ${typeof f}, not a function`}`);
    else if (want !== 'function' && fingerprint(f) !== want)
      problems.push(`${name} changed (source ${fingerprint(f)}, the patches know ${want})`);
  }
  return problems;
}

/**
 * Installs all of them, resolving modules the way the Azurite script at `mainPath` resolves them,
 * after checking that every internal they touch is the one they were written against
 * (EXPECTED_SHAPE). When one is not, none is installed and Azurite runs as published: one line
 * on stderr says what differs. Returns whether the patches are installed.
 * @param {string} mainPath
 * @param {Record<string, string>} [expected]
 * @param {(line: string) => void} [warn]
 */
function installIntoAzurite(mainPath, expected = EXPECTED_SHAPE, warn = (line) => process.stderr.write(`${line}\n`)) {
  const fromAzurite = Module.createRequire(mainPath);
  const problems = shapeProblems(azuriteInternals(fromAzurite), expected);
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    warn(`image-triage azurite preload: not installed, Azurite runs as published: ${problems[0]}${more}`);
    return false;
  }
  const Loki = fromAzurite('lokijs');
  installLokiQueryPlanner(Loki);
  // Extents are keyed by uuids (common/persistence/*ExtentStore.js), their only index.
  installLokiInPlaceRemoval(Loki, (coll) => coll.name === '$EXTENTS_COLLECTION$');
  installUriTemplateCache(fromAzurite.resolve('uri-templates'));
  installHeadKeepAlive(require('node:http'));
  installDispatchMatchCache(fromAzurite('./generated/utils/utils.js'));
  installDurableAcks(Loki, require('node:http'));
  return true;
}

/** Printed once installed, so whoever started Azurite can tell (startAzurite's onLine). */
const PRELOAD_MARKER = 'image-triage azurite preload: active';

module.exports = {
  installLokiQueryPlanner,
  installLokiInPlaceRemoval,
  installUriTemplateCache,
  installDispatchMatchCache,
  installHeadKeepAlive,
  installDurableAcks,
  installIntoAzurite,
  planQuery,
  cachedPlan,
  azuriteInternals,
  shapeProblems,
  EXPECTED_SHAPE,
  PRELOAD_MARKER,
};

const main = process.argv[1];
if (main !== undefined && /[\\/]azurite[\\/]dist[\\/]src[\\/]blob[\\/]main\.js$/.test(main)) {
  if (installIntoAzurite(main)) process.stdout.write(`${PRELOAD_MARKER}\n`);
}
