/**
 * The embedded runtime: runs the function app against Azurite (or any storage account) the way
 * the Functions host runs it in Azure.
 *  - blob triggers: containers are scanned; a blob whose ETag has no receipt is delivered once
 *    (a changed re-upload has a new ETag, so it is delivered again). Receipts are kept in the
 *    host container so a restart does not redeliver. Failures are retried with backoff, five
 *    attempts at most (then the blob is recorded as poison), as the host does. An unreachable
 *    storage service does not count as an attempt: nothing is lost while it is down.
 *  - timer triggers: the same NCRONTAB setting (`%NAME%` resolved from the settings).
 *  - HTTP triggers: a local server on /api/{route}.
 * Invocations run with bounded concurrency; stop() drains them.
 */
import http from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Cron } from 'croner';
import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { ConfigError, type Config, type Env } from '../config';
import { buildDeps, Deps, runWithDeps } from '../composition';
import { BlobData, BlobStore, isUnreachable } from '../storage/blobStore';
import { HOST_CONTAINER, matchTriggerPath, paths } from '../storage/layout';
import type { Log } from '../util/log';
import { errorResponse } from '../handlers/http';
import { loadFunctionApp as loadApp, LoadedFunction } from '@image-triage/local-functions-host';

/** functions/ beside src/: the TypeScript sources under ts-jest, the compiled files under dist/. */
export function defaultFunctionsDir(): string {
  return path.resolve(__dirname, '..', '..', 'functions');
}

/** The app's registrations (every file of functions/ by default), as the Functions host loads them. */
export function loadFunctionApp(dir: string = defaultFunctionsDir()): LoadedFunction[] {
  return loadApp(dir);
}

export interface RuntimeOptions {
  config: Config;
  /** App settings used to resolve `%NAME%` in trigger options (defaults to process.env). */
  settings?: Env;
  /** Functions to run; default: every registration of functions/. */
  functions?: LoadedFunction[];
  instanceId?: string;
  log?: Log;
  /** Attempts before a blob is set aside as poison (the host's default is 5). */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt, capped at 10 s. */
  retryBaseMs?: number;
}

interface WorkItem {
  fn: LoadedFunction;
  container: string;
  blob: string;
  etag: string;
  binding: Record<string, string>;
  /**
   * What this runtime itself wrote as `etag`: delivered without downloading it again (an Event
   * Grid event plus the host's read, for one request less). Absent for scanned work.
   */
  written?: BlobData;
}

interface Attempts {
  etag: string;
  count: number;
  notBefore: number;
}

const HTTP_PORT_SETTING = 'TRIAGE_LOCAL_HTTP_PORT';
const RECEIPT_FLUSH_MS = 5000;
/** Bytes of written blobs held for delivery at most (beyond it, work items download as scanned ones do). */
const MAX_HELD_BYTES = 64 * 2 ** 20;
/**
 * Containers this runtime's functions write are scanned at most this often (their writes trigger
 * at once), and at most once per 50 times the last listing of it took (2% of the time at most).
 */
const OWN_WRITES_SCAN_MS = 60_000;
const OWN_WRITES_SCAN_SHARE = 50;
/** While a backlog drains, a scan waits until the queue is short again, or this long at most. */
const BACKLOG_SCAN_MS = 60_000;

export interface RuntimeStats {
  invocations: number;
  failures: number;
  poisoned: number;
  inFlight: number;
  queued: number;
}

export class EmbeddedRuntime {
  readonly deps: Deps;
  readonly functions: LoadedFunction[];
  private readonly store: BlobStore;
  private readonly log: Log;
  private readonly settings: Env;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly receipts = new Map<string, string>();
  private readonly attempts = new Map<string, Attempts>();
  private readonly pending = new Map<string, WorkItem>();
  /** Work announced by this runtime's own writes: runs before scanned work, so a chain finishes first. */
  private readonly hot = new Map<string, WorkItem>();
  /** Running blob invocations: key -> the ETag being processed. */
  private readonly running = new Map<string, string>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly crons: Cron[] = [];
  private readonly timerBusy = new Set<string>();
  private readonly dirtyReceipts = new Set<string>();
  /** Bytes held by queued work items' `written`. */
  private heldBytes = 0;
  /** Triggered containers this runtime's functions have written to: scanned only as a safety net. */
  private readonly ownWrites = new Set<string>();
  /** Per container: when its last listing started, and how long it took. */
  private readonly lastScanOf = new Map<string, { at: number; ms: number }>();
  /** waitForIdle asked for a scan of every container. */
  private fullScanWanted = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private server: http.Server | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  /** A backlog deferred the next scan: scan as soon as the queue is short (see pump). */
  private scanWhenDrained = false;
  /** Earliest start of the next scan (scans are spaced by four times their duration). */
  private nextScanAllowed = 0;
  private stopped = false;
  /** Start time of the last scan that completed without error. */
  private lastCleanScanStart = 0;
  /** When the last invocation finished (its writes may trigger further functions). */
  private lastActivity = 0;
  private unreachableSince: number | undefined;
  private stats = { invocations: 0, failures: 0, poisoned: 0 };
  httpPort = 0;

  private constructor(opts: RuntimeOptions) {
    const store = BlobStore.fromConnection(opts.config.storage);
    store.onWrite = (container, name, written) => this.notify(container, name, written);
    this.deps = buildDeps(opts.config, { store, instanceId: opts.instanceId ?? `local-${randomUUID().slice(0, 8)}` });
    this.store = store;
    this.functions = opts.functions ?? loadFunctionApp();
    this.log = opts.log ?? { info: () => {}, warn: console.warn, error: console.error };
    this.settings = opts.settings ?? process.env;
    this.maxAttempts = opts.maxAttempts ?? 5;
    this.retryBaseMs = opts.retryBaseMs ?? 250;
  }

  /** Creates the containers, loads receipts, and starts every trigger. */
  static async start(opts: RuntimeOptions): Promise<EmbeddedRuntime> {
    const rt = new EmbeddedRuntime(opts);
    try {
      await rt.store.ensureContainers([HOST_CONTAINER]);
      await rt.loadReceipts();
      rt.startTimers();
      await rt.startHttp(opts.config.localHttpPort);
    } catch (err) {
      await rt.stop();
      throw err;
    }
    rt.scheduleScan(0);
    rt.flushTimer = setInterval(() => void rt.flushReceipts(), RECEIPT_FLUSH_MS);
    rt.log.info(
      `embedded runtime ${rt.deps.instanceId}: ${rt.functions.map((f) => `${f.name} (${f.trigger.kind})`).join(', ')}`,
    );
    return rt;
  }

  get statistics(): RuntimeStats {
    return { ...this.stats, inFlight: this.running.size, queued: this.pending.size + this.hot.size };
  }

  // ---------- blob triggers ----------

  private blobFunctions(): LoadedFunction[] {
    return this.functions.filter((f) => f.trigger.kind === 'blob');
  }

  private key(fn: string, container: string, blob: string): string {
    return `${fn}\u0000${container}\u0000${blob}`;
  }

  /** Receipts: one blob per function mapping "container/blob" to the ETag last delivered. */
  private async loadReceipts(): Promise<void> {
    for (const fn of this.blobFunctions()) {
      const r = await this.store.getJson<Record<string, string>>(HOST_CONTAINER, paths.receipts(fn.name));
      for (const [k, etag] of Object.entries(r?.value ?? {})) this.receipts.set(`${fn.name}\u0000${k}`, etag);
    }
  }

  private markDelivered(item: WorkItem, etag: string): void {
    this.receipts.set(this.key(item.fn.name, item.container, item.blob), etag);
    this.dirtyReceipts.add(item.fn.name);
  }

  /**
   * Writes the receipts of functions that delivered something since the last flush. Merged with
   * what other runtimes on the same account wrote (ETag-conditional read-merge-write), so a
   * restart of any of them redelivers nothing that was delivered before the last flush.
   */
  async flushReceipts(): Promise<void> {
    const fns = [...this.dirtyReceipts];
    this.dirtyReceipts.clear();
    for (const fn of fns) {
      const prefix = `${fn}\u0000`;
      const mine: Record<string, string> = {};
      for (const [k, etag] of this.receipts) if (k.startsWith(prefix)) mine[k.slice(prefix.length)] = etag;
      try {
        for (let attempt = 0; attempt < 5; attempt++) {
          const existing = await this.store.getJson<Record<string, string>>(HOST_CONTAINER, paths.receipts(fn));
          const merged = { ...(existing?.value ?? {}), ...mine };
          const r = await this.store.putJson(
            HOST_CONTAINER,
            paths.receipts(fn),
            merged,
            existing === undefined ? { ifNoneExists: true } : { ifMatch: existing.etag },
          );
          if (r.written) break;
        }
      } catch (err) {
        this.dirtyReceipts.add(fn);
        if (!isUnreachable(err)) this.log.warn(`could not save receipts of ${fn}: ${String(err)}`);
      }
    }
  }

  private async recordPoison(item: WorkItem, etag: string, err: unknown): Promise<void> {
    this.markDelivered(item, etag);
    await this.store.putJson(HOST_CONTAINER, paths.poison(item.fn.name, item.container, item.blob), {
      function: item.fn.name,
      blob: `${item.container}/${item.blob}`,
      etag,
      error: err instanceof Error ? err.message : String(err),
      time: new Date().toISOString(),
    });
  }

  /**
   * A blob written through this runtime's own store: deliver it now, as an Event Grid event would,
   * with the bytes just written (no download). If the blob is being processed right now, this
   * version waits in the queue until that invocation ends.
   */
  private notify(container: string, blob: string, written: BlobData): void {
    if (this.stopped) return;
    for (const fn of this.blobFunctions()) {
      if (fn.trigger.kind !== 'blob') continue;
      const binding = matchTriggerPath(fn.trigger.path, container, blob);
      if (binding === undefined) continue;
      this.ownWrites.add(container);
      const k = this.key(fn.name, container, blob);
      if (this.receipts.get(k) === written.etag || this.running.get(k) === written.etag) continue;
      this.dequeue(k);
      const hold = this.heldBytes + written.data.length <= MAX_HELD_BYTES;
      if (hold) this.heldBytes += written.data.length;
      this.hot.set(k, { fn, container, blob, etag: written.etag, binding, ...(hold ? { written } : {}) });
    }
    this.pump();
  }

  /** Removes queued work for a key (superseded by newer work, or started). */
  private dequeue(k: string): void {
    this.heldBytes -= this.hot.get(k)?.written?.data.length ?? 0;
    this.hot.delete(k);
    this.pending.delete(k);
  }

  /**
   * Scans catch what was written from outside (uploads by the CLI, another instance). A scan of a
   * large container is not free: for the storage service, and for this process (the SDK spends
   * about 0.1 ms per listed blob, a sixth of a small request; a scan of 30,000 blobs is seconds of
   * CPU). So scans are at least four times their duration apart (they then take at most a fifth
   * of the storage service's time), and while a long queue drains there is no scan until it is
   * short again, or for BACKLOG_SCAN_MS: what a scan finds would wait behind the queue anyway.
   */
  private scheduleScan(delayMs: number): void {
    if (this.stopped) return;
    if (this.scanTimer !== undefined) clearTimeout(this.scanTimer);
    this.scanTimer = setTimeout(() => {
      this.scanTimer = undefined;
      const started = performance.now();
      this.scanWhenDrained = false;
      const full = this.fullScanWanted;
      this.fullScanWanted = false;
      this.scanning = this.scanOnce(full).finally(() => {
        this.scanning = undefined;
        const now = performance.now();
        this.nextScanAllowed = now + Math.max(this.deps.config.localPollMs, 4 * (now - started));
        this.scanWhenDrained = this.backlogged();
        this.scheduleScan(this.scanWhenDrained ? BACKLOG_SCAN_MS : this.nextScanAllowed - now);
      });
    }, delayMs);
  }

  private backlogged(): boolean {
    return this.pending.size + this.hot.size > 10 * this.deps.config.localConcurrency;
  }

  /**
   * One pass over the triggered containers: queue what has no receipt for its ETag. A container
   * this runtime's functions write (preprocessed/) is left out unless `full`, never listed yet, or
   * its last listing is old enough (OWN_WRITES_SCAN_MS, and 50 times that listing's duration): those
   * writes were delivered when they were made, so the scan only catches another instance's writes
   * (listing costs both sides ~0.1 ms per blob).
   */
  async scanOnce(full = true): Promise<void> {
    const scanStart = performance.now();
    let skipped = false;
    try {
      const byContainer = new Map<string, LoadedFunction[]>();
      for (const f of this.blobFunctions()) {
        if (f.trigger.kind !== 'blob') continue;
        const list = byContainer.get(f.trigger.container) ?? [];
        list.push(f);
        byContainer.set(f.trigger.container, list);
      }
      for (const [container, fns] of byContainer) {
        const last = this.lastScanOf.get(container);
        if (
          !full &&
          this.ownWrites.has(container) &&
          last !== undefined &&
          scanStart - last.at < Math.max(OWN_WRITES_SCAN_MS, OWN_WRITES_SCAN_SHARE * last.ms)
        ) {
          skipped = true;
          continue;
        }
        const listStart = performance.now();
        for await (const entry of this.store.list(container)) {
          for (const fn of fns) {
            if (fn.trigger.kind !== 'blob') continue;
            const binding = matchTriggerPath(fn.trigger.path, container, entry.name);
            if (binding === undefined) continue;
            const k = this.key(fn.name, container, entry.name);
            if (this.receipts.get(k) === entry.etag || this.running.has(k) || this.hot.has(k)) continue;
            const att = this.attempts.get(k);
            if (att !== undefined && att.etag === entry.etag && att.notBefore > Date.now()) continue;
            this.pending.set(k, { fn, container, blob: entry.name, etag: entry.etag, binding });
          }
        }
        this.lastScanOf.set(container, { at: listStart, ms: performance.now() - listStart });
      }
      if (this.unreachableSince !== undefined) {
        this.log.info(`storage reachable again after ${Date.now() - this.unreachableSince} ms`);
        this.unreachableSince = undefined;
      }
      if (!skipped) this.lastCleanScanStart = scanStart;
    } catch (err) {
      if (isUnreachable(err)) {
        if (this.unreachableSince === undefined) {
          this.unreachableSince = Date.now();
          this.log.warn(`storage unreachable; will keep trying: ${String(err)}`);
        }
      } else {
        this.log.error(`scan failed: ${String(err)}`);
      }
    }
    this.pump();
  }

  /** Starts queued work up to the concurrency limit. */
  private pump(): void {
    if (this.scanWhenDrained && this.scanning === undefined && !this.backlogged()) {
      this.scanWhenDrained = false;
      this.scheduleScan(Math.max(0, this.nextScanAllowed - performance.now()));
    }
    const limit = this.deps.config.localConcurrency;
    for (const [k, item] of this.queued()) {
      if (this.stopped || this.running.size >= limit) return;
      if (this.running.has(k)) continue; // a newer version waits for the running one
      this.dequeue(k);
      this.running.set(k, item.etag);
      const p = this.invokeBlob(k, item).finally(() => {
        this.lastActivity = performance.now();
        this.running.delete(k);
        this.inFlight.delete(p);
        this.pump();
      });
      this.inFlight.add(p);
    }
  }

  private *queued(): Generator<[string, WorkItem]> {
    yield* this.hot;
    yield* this.pending;
  }

  private async invokeBlob(k: string, item: WorkItem): Promise<void> {
    let etag = item.etag;
    try {
      const blob = item.written ?? (await this.store.get(item.container, item.blob));
      if (blob === undefined) return; // deleted before we got to it
      etag = blob.etag;
      this.running.set(k, etag);
      if (this.receipts.get(k) === etag) return;
      const store = this.store;
      const context = new InvocationContext({
        functionName: item.fn.name,
        invocationId: randomUUID(),
        triggerMetadata: {
          ...item.binding,
          blobTrigger: `${item.container}/${item.blob}`,
          // A client per blob is costly to build and no handler reads the URI: built when read.
          get uri(): string {
            return store.container(item.container).getBlobClient(item.blob).url;
          },
          properties: { eTag: etag, contentLength: blob.data.length, contentType: blob.contentType },
          metadata: blob.metadata,
        },
        options: {
          trigger: {
            ...item.fn.triggerBinding,
            name: item.fn.triggerBinding.name ?? 'trigger',
            type: item.fn.triggerBinding.type,
          },
        },
        logHandler: (level, ...args) => this.forward(item.fn.name, level, args),
      });
      this.stats.invocations++;
      await runWithDeps(this.deps, () => Promise.resolve(item.fn.callback(blob.data, context)));
      this.markDelivered(item, etag);
      this.attempts.delete(k);
    } catch (err) {
      this.stats.failures++;
      if (isUnreachable(err)) {
        // Not an attempt: the blob is picked up again once storage is back (by a scan of every
        // container: what this runtime wrote itself is otherwise listed only now and then).
        this.fullScanWanted = true;
        this.log.warn(`${item.fn.name} ${item.container}/${item.blob}: storage unreachable, will retry`);
        return;
      }
      const prev = this.attempts.get(k);
      const count = prev !== undefined && prev.etag === etag ? prev.count + 1 : 1;
      if (count >= this.maxAttempts) {
        this.stats.poisoned++;
        this.attempts.delete(k);
        this.log.error(
          `${item.fn.name} ${item.container}/${item.blob}: failed ${count} times, set aside as poison: ${String(err)}`,
        );
        await this.recordPoison(item, etag, err).catch((e: unknown) =>
          this.log.error(`could not record poison: ${String(e)}`),
        );
        return;
      }
      const delay = Math.min(this.retryBaseMs * 2 ** (count - 1), 10_000);
      this.attempts.set(k, { etag, count, notBefore: Date.now() + delay });
      this.log.warn(
        `${item.fn.name} ${item.container}/${item.blob}: attempt ${count} failed, retrying in ${delay} ms: ${String(err)}`,
      );
    }
  }

  private forward(fn: string, level: string, args: unknown[]): void {
    const msg = `[${fn}] ${args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ')}`;
    if (level === 'error' || level === 'critical') this.log.error(msg);
    else if (level === 'warning') this.log.warn(msg);
    else this.log.info(msg);
  }

  // ---------- timers ----------

  /** Resolves `%NAME%` app-setting references as the host does. */
  resolveSetting(value: string): string {
    return value.replace(/%([^%]+)%/g, (_m, name: string) => {
      const v = this.settings[name];
      if (v === undefined || v.trim() === '') throw new Error(`Setting ${name} (referenced as %${name}%) is missing.`);
      return v.trim();
    });
  }

  private startTimers(): void {
    for (const fn of this.functions) {
      if (fn.trigger.kind !== 'timer') continue;
      const expr = this.resolveSetting(fn.trigger.schedule);
      const cron = new Cron(expr, { protect: true }, () => {
        void this.fireTimer(fn, cron);
      });
      this.crons.push(cron);
      if (fn.trigger.runOnStartup) void this.fireTimer(fn, cron);
    }
  }

  /** Runs a timer function now (also used by tests and `triage` to fire a schedule by hand). */
  async fireTimer(fn: LoadedFunction, cron?: Cron): Promise<void> {
    if (this.stopped || this.timerBusy.has(fn.name)) return;
    this.timerBusy.add(fn.name);
    const p = (async () => {
      const next = cron?.nextRun();
      const timer = {
        isPastDue: false,
        schedule: { adjustForDST: true },
        scheduleStatus: {
          last: new Date().toISOString(),
          next: next?.toISOString() ?? '',
          lastUpdated: new Date().toISOString(),
        },
      };
      const context = new InvocationContext({
        functionName: fn.name,
        invocationId: randomUUID(),
        logHandler: (level, ...args) => this.forward(fn.name, level, args),
      });
      try {
        this.stats.invocations++;
        await runWithDeps(this.deps, () => Promise.resolve(fn.callback(timer, context)));
      } catch (err) {
        this.stats.failures++;
        this.log.error(`${fn.name}: timer invocation failed: ${String(err)}`);
      } finally {
        this.lastActivity = performance.now();
        this.timerBusy.delete(fn.name);
      }
    })();
    this.inFlight.add(p);
    await p.finally(() => this.inFlight.delete(p));
  }

  // ---------- HTTP ----------

  private async startHttp(port: number): Promise<void> {
    const httpFns = this.functions.filter((f) => f.trigger.kind === 'http');
    if (httpFns.length === 0) return;
    this.server = http.createServer((req, res) => {
      void this.serveHttp(httpFns, req, res);
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', (err) => reject(portError(port, err)));
      this.server?.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    this.httpPort = typeof addr === 'object' && addr !== null ? addr.port : port;
  }

  /**
   * Every request gets an answer and none can take the process down: a malformed request is the
   * client's (4xx), a thrown error is ours (5xx), and nothing escapes this method.
   */
  private async serveHttp(fns: LoadedFunction[], req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      await this.dispatchHttp(fns, req, res);
    } catch (err) {
      this.stats.failures++;
      this.log.error(`HTTP ${req.method ?? '?'} ${(req.url ?? '').slice(0, 200)}: ${String(err)}`);
      const e = errorResponse(err);
      answer(res, e.status, e.body, e.headers);
    }
  }

  private async dispatchHttp(
    fns: LoadedFunction[],
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> {
    const target = parseTarget(req.url ?? '/');
    if (!target.ok) return answer(res, target.status, { error: target.error });
    const { url } = target;
    const method = (req.method ?? 'GET').toUpperCase();
    let matched: { fn: LoadedFunction; params: Record<string, string> } | undefined;
    const allowed = new Set<string>();
    for (const fn of fns) {
      if (fn.trigger.kind !== 'http') continue;
      const params = matchRoute(fn.trigger.route, url.pathname);
      if (params === undefined) continue;
      if (!fn.trigger.methods.includes(method)) {
        for (const m of fn.trigger.methods) allowed.add(m);
        continue;
      }
      matched = { fn, params };
      break;
    }
    if (matched === undefined) {
      if (allowed.size > 0)
        return answer(
          res,
          405,
          { error: `method ${method} not allowed here; allowed: ${[...allowed].join(', ')}` },
          { allow: [...allowed].join(', ') },
        );
      return answer(res, 404, { error: `no function at ${url.pathname.slice(0, 200)}` });
    }
    const declared = Number(req.headers['content-length'] ?? '0');
    if (!Number.isFinite(declared) || declared > MAX_HTTP_BODY_BYTES) {
      return answer(
        res,
        413,
        { error: `The body may have at most ${MAX_HTTP_BODY_BYTES} bytes.` },
        { connection: 'close' },
      );
    }
    const bytes = await readBody(req, MAX_HTTP_BODY_BYTES);
    if (bytes === undefined) {
      answer(res, 413, { error: `The body may have at most ${MAX_HTTP_BODY_BYTES} bytes.` }, { connection: 'close' });
      res.once('finish', () => req.destroy());
      return;
    }
    const headers: Record<string, string> = {};
    for (const [h, v] of Object.entries(req.headers))
      if (v !== undefined) headers[h] = Array.isArray(v) ? v.join(', ') : v;
    const request = new HttpRequest({
      method,
      url: url.toString(),
      headers,
      query: Object.fromEntries(url.searchParams),
      params: matched.params,
      body: { bytes },
    });
    const fn = matched.fn;
    const context = new InvocationContext({
      functionName: fn.name,
      invocationId: randomUUID(),
      logHandler: (level, ...args) => this.forward(fn.name, level, args),
    });
    const work = (async () => {
      try {
        this.stats.invocations++;
        const result = await runWithDeps(this.deps, () => Promise.resolve(fn.callback(request, context)));
        const response = result instanceof HttpResponse ? result : new HttpResponse(result ?? {});
        const body = Buffer.from(await response.arrayBuffer());
        const outHeaders: Record<string, string> = {};
        response.headers.forEach((v, h) => {
          outHeaders[h] = v;
        });
        res.writeHead(response.status, outHeaders);
        res.end(body);
      } catch (err) {
        this.stats.failures++;
        if (isUnreachable(err)) this.log.warn(`${fn.name}: ${String(err)}`);
        else this.log.error(`${fn.name}: ${String(err)}`);
        const e = errorResponse(err);
        answer(res, e.status, e.body, e.headers);
      }
    })();
    this.inFlight.add(work);
    await work.finally(() => this.inFlight.delete(work));
  }

  // ---------- lifecycle ----------

  /**
   * Resolves once nothing is queued, running or waiting for a retry, and a scan that started
   * after the last invocation finished (and after this call) found nothing new. Rejects after
   * `timeoutMs`.
   */
  async waitForIdle(timeoutMs = 120_000): Promise<void> {
    const called = performance.now();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const quiet =
        this.pending.size === 0 &&
        this.hot.size === 0 &&
        this.running.size === 0 &&
        this.attempts.size === 0 &&
        this.timerBusy.size === 0;
      if (quiet && this.lastCleanScanStart > Math.max(called, this.lastActivity)) return;
      // Scans that leave out a container do not count: ask the next one to list everything.
      this.fullScanWanted = true;
      if (Date.now() > deadline) {
        throw new Error(
          `runtime not idle after ${timeoutMs} ms: queued ${this.pending.size}, running ${this.running.size}, retrying ${this.attempts.size}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Stops triggering new work, closes the HTTP port and waits for running invocations. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.scanTimer !== undefined) clearTimeout(this.scanTimer);
    for (const c of this.crons) c.stop();
    this.pending.clear();
    this.hot.clear();
    this.heldBytes = 0;
    const closing =
      this.server === undefined ? Promise.resolve() : new Promise<void>((r) => this.server?.close(() => r()));
    this.server?.closeIdleConnections?.();
    await this.scanning?.catch(() => undefined);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    if (this.flushTimer !== undefined) clearInterval(this.flushTimer);
    await this.flushReceipts();
    await closing;
  }
}

/**
 * A port the HTTP functions cannot listen on is a configuration error (naming the setting and the
 * port), not a stack trace; other listen errors pass through.
 */
export function portError(port: number, err: Error & { code?: string }): Error {
  if (err.code === 'EADDRINUSE')
    return new ConfigError(
      HTTP_PORT_SETTING,
      String(port),
      `a free port: ${port} is in use by another program (stop it, or set ${HTTP_PORT_SETTING} to another port, or 0 for any free port)`,
    );
  if (err.code === 'EACCES')
    return new ConfigError(
      HTTP_PORT_SETTING,
      String(port),
      `a port this user may listen on: ${port} needs privileges (use a port above 1023, or 0 for any free port)`,
    );
  return err;
}

/** Resolves when `port` can be listened on (127.0.0.1); rejects with portError's ConfigError if not. Port 0 always can. */
export async function checkHttpPort(port: number): Promise<void> {
  if (port === 0) return;
  const probe = http.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err) => reject(portError(port, err)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/** Bytes a request body may have in the embedded runtime (routes set lower limits: src/handlers/http.ts). */
export const MAX_HTTP_BODY_BYTES = 1024 * 1024;
/** Characters a request target may have (a 1,019-character name percent-encoded as UTF-8 fits). */
export const MAX_HTTP_TARGET = 12 * 1024;

/**
 * The request target as a URL, or the 4xx that refuses it: too long (414), not a path, or a path
 * whose percent-encoding does not decode (400; route values are decoded, so it could not bind).
 */
export function parseTarget(target: string): { ok: true; url: URL } | { ok: false; status: 400 | 414; error: string } {
  if (target.length > MAX_HTTP_TARGET)
    return {
      ok: false,
      status: 414,
      error: `The request target has ${target.length} characters; at most ${MAX_HTTP_TARGET} are accepted.`,
    };
  if (!target.startsWith('/'))
    return { ok: false, status: 400, error: 'The request target must be a path (origin form, starting with "/").' };
  let url: URL;
  try {
    url = new URL(`http://127.0.0.1${target}`);
    decodeURIComponent(url.pathname);
  } catch {
    return { ok: false, status: 400, error: 'The request path has a malformed percent-encoding.' };
  }
  return { ok: true, url };
}

/** The request body, or undefined as soon as it passes `max` bytes (the rest is not kept). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      received += c.length;
      if (received > max) {
        over = true;
        chunks.length = 0;
        resolve(undefined);
      } else chunks.push(c);
    });
    req.once('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('the client closed the connection before the body ended'));
    });
  });
}

/** Answers with a JSON body unless an answer was already started (then the connection is closed). */
function answer(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Matches `/api/{route}`; route segments like `{name}` bind, a final `{*rest}` spans slashes. */
export function matchRoute(route: string, pathname: string): Record<string, string> | undefined {
  const prefix = '/api/';
  if (!pathname.startsWith(prefix)) return undefined;
  const rest = pathname.slice(prefix.length);
  const names: string[] = [];
  const re = route.replace(
    /\{(\*?)(\w+)(\?)?\}|([^{}]+)/g,
    (_m, star: string, name: string | undefined, opt: string | undefined, lit: string | undefined) => {
      if (name !== undefined) {
        names.push(name);
        const body = star === '*' ? '(.+)' : '([^/]+)';
        return opt === '?' ? `${body}?` : body;
      }
      return (lit ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    },
  );
  const m = new RegExp(`^${re}/?$`).exec(rest);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  try {
    names.forEach((n, i) => {
      const v = m[i + 1];
      if (v !== undefined) params[n] = decodeURIComponent(v);
    });
  } catch {
    return undefined; // a malformed %-escape matches no route (the host answers 404 as well)
  }
  return params;
}
