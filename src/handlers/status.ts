/** Counts per container and the work still pending: what `triage status` and GET /api/status show. */
import type { BlobStore } from '../storage/blobStore';
import { ALL_CONTAINERS, CONTAINERS, uploadNameFromPreprocessed, uploadNameFromRecord } from '../storage/layout';
import { InstanceImaging, findCard, incompatibility, readCurrent } from '../registry/registry';

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

async function names(store: BlobStore, container: string, map: (n: string) => string | undefined): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const e of store.list(container)) {
    const n = map(e.name);
    if (n !== undefined) out.add(n);
  }
  return out;
}

export async function collectStatus(store: BlobStore, instance?: InstanceImaging): Promise<StatusReport> {
  const containers: Record<string, number> = {};
  await Promise.all(
    ALL_CONTAINERS.map(async (c) => {
      containers[c] = await store.count(c).catch(() => 0);
    }),
  );
  const [uploads, pre, rej, pred, flagged, current] = await Promise.all([
    names(store, CONTAINERS.uploads, (n) => n),
    names(store, CONTAINERS.preprocessed, uploadNameFromPreprocessed),
    names(store, CONTAINERS.rejected, uploadNameFromRecord),
    names(store, CONTAINERS.predictions, uploadNameFromRecord),
    names(store, CONTAINERS.flagged, uploadNameFromRecord),
    readCurrent(store),
  ]);
  let pending = 0;
  for (const u of uploads) if (!pre.has(u) && !rej.has(u)) pending++;
  let pendingScore = 0;
  for (const p of pre) if (!pred.has(p)) pendingScore++;
  const rejectionsByCode: Record<string, number> = {};
  for await (const e of store.list(CONTAINERS.rejected, undefined, true)) {
    const code = e.metadata.code ?? (await store.getJson<{ code?: string }>(CONTAINERS.rejected, e.name))?.value.code ?? 'unknown';
    rejectionsByCode[code] = (rejectionsByCode[code] ?? 0) + 1;
  }
  const card = current !== undefined && instance !== undefined ? await findCard(store, current.value.version) : undefined;
  const problem = card !== undefined && instance !== undefined ? incompatibility({ ...card, version: current?.value.version ?? card.version }, instance) : undefined;
  return {
    containers,
    uploads: uploads.size,
    preprocessed: pre.size,
    rejected: rej.size,
    pendingPreprocess: pending,
    predicted: pred.size,
    flagged: flagged.size,
    pendingScore,
    model: current?.value.version ?? null,
    ...(problem !== undefined ? { modelProblem: `${problem}; images wait unscored until a compatible model is promoted` } : {}),
    rejectionsByCode,
  };
}
