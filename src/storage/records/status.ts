/** Counts per container and the work still pending: what `triage status` and GET /api/status show. */
import { BlobEntry, BlobStore, isNotFound } from '../blobStore';
import { ALL_CONTAINERS, CONTAINERS, paths, uploadNameFromPreprocessed, uploadNameFromRecord } from '../layout';
import { InstanceImaging, findCard, incompatibility, readCurrent } from '../../registry/registry';

export interface StatusReport {
  containers: Record<string, number>;
  uploads: number;
  preprocessed: number;
  rejected: number;
  /** Uploads with neither a preprocessed image nor a rejection yet. */
  pendingPreprocess: number;
  predicted: number;
  flagged: number;
  /** Preprocessed images without a prediction (they wait for a model, or are being scored). */
  pendingScore: number;
  /** The promoted model version, if any. */
  model: string | null;
  /** Why the promoted model cannot score this instance's images (they wait, unscored), when it cannot. */
  modelProblem?: string;
  rejectionsByCode: Record<string, number>;
}

/** One listing of a container: how many blobs, and what `map` makes of their names. */
async function listOnce(
  store: BlobStore,
  container: string,
  map?: (n: string) => string | undefined,
  onEntry?: (e: BlobEntry) => void,
): Promise<{ count: number; names: Set<string> }> {
  const names = new Set<string>();
  let count = 0;
  try {
    for await (const e of store.list(container, undefined, onEntry !== undefined)) {
      count++;
      onEntry?.(e);
      const n = map?.(e.name);
      if (n !== undefined) names.add(n);
    }
  } catch (err) {
    if (!isNotFound(err)) throw err; // a container not created yet holds nothing
  }
  return { count, names };
}

/**
 * Exact counts: every container is listed once (a listing costs the storage service about the same
 * per blob whatever is asked of it). `triage status` shows this; GET /api/status serves a snapshot
 * of it (cachedStatus).
 */
const OTHER_CONTAINERS = ALL_CONTAINERS.filter(
  (c) =>
    c !== CONTAINERS.uploads &&
    c !== CONTAINERS.preprocessed &&
    c !== CONTAINERS.rejected &&
    c !== CONTAINERS.predictions &&
    c !== CONTAINERS.flagged,
);

export async function collectStatus(store: BlobStore, instance?: InstanceImaging): Promise<StatusReport> {
  const rejectedCodes: BlobEntry[] = [];
  const same = (n: string) => n;
  const [uploads, pre, rej, pred, flagged, current, ...others] = await Promise.all([
    listOnce(store, CONTAINERS.uploads, same),
    listOnce(store, CONTAINERS.preprocessed, uploadNameFromPreprocessed),
    // Rejection record names: a name that cannot carry its own record has a hashed one (paths.rejected).
    listOnce(store, CONTAINERS.rejected, same, (e) => rejectedCodes.push(e)),
    listOnce(store, CONTAINERS.predictions, uploadNameFromRecord),
    listOnce(store, CONTAINERS.flagged, uploadNameFromRecord),
    readCurrent(store),
    ...OTHER_CONTAINERS.map((c) => listOnce(store, c)),
  ]);
  const containers: Record<string, number> = {};
  const listed = new Map<string, number>([
    [CONTAINERS.uploads, uploads.count],
    [CONTAINERS.preprocessed, pre.count],
    [CONTAINERS.rejected, rej.count],
    [CONTAINERS.predictions, pred.count],
    [CONTAINERS.flagged, flagged.count],
    ...OTHER_CONTAINERS.map((c, i): [string, number] => [c, others[i]?.count ?? 0]),
  ]);
  for (const c of ALL_CONTAINERS) containers[c] = listed.get(c) ?? 0;
  let pending = 0;
  for (const u of uploads.names) if (!pre.names.has(u) && !rej.names.has(paths.rejected(u))) pending++;
  let pendingScore = 0;
  for (const p of pre.names) if (!pred.names.has(p)) pendingScore++;
  const rejectionsByCode: Record<string, number> = {};
  for (const e of rejectedCodes) {
    const code =
      e.metadata.code ?? (await store.getJson<{ code?: string }>(CONTAINERS.rejected, e.name))?.value.code ?? 'unknown';
    rejectionsByCode[code] = (rejectionsByCode[code] ?? 0) + 1;
  }
  const card =
    current !== undefined && instance !== undefined ? await findCard(store, current.value.version) : undefined;
  const problem =
    card !== undefined && instance !== undefined
      ? incompatibility({ ...card, version: current?.value.version ?? card.version }, instance)
      : undefined;
  return {
    containers,
    uploads: uploads.count,
    preprocessed: pre.names.size,
    rejected: rej.count,
    pendingPreprocess: pending,
    predicted: pred.names.size,
    flagged: flagged.names.size,
    pendingScore,
    model: current?.value.version ?? null,
    ...(problem !== undefined
      ? { modelProblem: `${problem}; images wait unscored until a compatible model is promoted` }
      : {}),
    rejectionsByCode,
  };
}

/** What GET /api/status answers: the exact report as of `asOf`, and how old it is. */
export interface StatusSnapshot extends StatusReport {
  asOf: string;
  ageSeconds: number;
  /** A newer report is being collected; the next call after it ends gets it. */
  refreshing: boolean;
}

export interface CachedStatusOptions {
  /** A report younger than this is never refreshed. Default 30 s. */
  minRefreshMs?: number;
  /** Nor one younger than this many times its own collection took. Default 10. */
  refreshShare?: number;
  now?: () => number;
}

interface StatusCache {
  report?: StatusReport;
  at: number;
  ms: number;
  running?: Promise<void>;
}

/** Per store (not per module): each store is one account. */
const statusCaches = new WeakMap<BlobStore, StatusCache>();

/**
 * GET /api/status: a full report lists every container (seconds at 10,000 blobs, and the storage
 * service's time too), so the HTTP route serves the last report with its age and collects a new
 * one behind the answer once the last is older than max(minRefreshMs, refreshShare x its own
 * collection time). Only the first call on an instance waits for a report; concurrent calls share
 * one collection; a failed refresh keeps the last report (the next call tries again).
 */
export async function cachedStatus(
  store: BlobStore,
  instance?: InstanceImaging,
  opts: CachedStatusOptions = {},
): Promise<StatusSnapshot> {
  const now = opts.now ?? Date.now;
  let cache = statusCaches.get(store);
  if (cache === undefined) {
    cache = { at: 0, ms: 0 };
    statusCaches.set(store, cache);
  }
  const c = cache;
  const refresh = (): Promise<void> => {
    c.running ??= (async () => {
      const started = now();
      try {
        c.report = await collectStatus(store, instance);
        c.at = started;
        c.ms = now() - started;
      } finally {
        c.running = undefined;
      }
    })();
    return c.running;
  };
  if (c.report === undefined) await refresh();
  else if (now() - c.at >= Math.max(opts.minRefreshMs ?? 30_000, (opts.refreshShare ?? 10) * c.ms))
    void refresh().catch(() => undefined);
  const report = c.report;
  if (report === undefined) throw new Error('status: no report was collected');
  return {
    ...report,
    asOf: new Date(c.at).toISOString(),
    ageSeconds: Math.max(0, Math.round((now() - c.at) / 1000)),
    refreshing: c.running !== undefined,
  };
}
