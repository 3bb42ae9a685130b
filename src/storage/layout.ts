/**
 * The storage layout: every container and every blob path the system uses is named here and
 * nowhere else. Triggers (functions/), handlers, the CLI, tests and the Bicep templates all read it.
 */

export const CONTAINERS = {
  uploads: 'uploads',
  preprocessed: 'preprocessed',
  predictions: 'predictions',
  flagged: 'flagged',
  rejected: 'rejected',
  labels: 'labels',
  models: 'models',
  runs: 'runs',
  /**
   * Written by Event Grid only (Azure): BlobCreated events it gave up delivering to a function after
   * its retries, as {SUBSCRIPTION-NAME}/{y}/{m}/{d}/{h}/{guid}.json (infra/eventgrid.bicep). Nothing
   * here reads or writes it; the embedded runtime never dead-letters (it keeps poison records in
   * HOST_CONTAINER instead).
   */
  deadLetter: 'deadletter',
} as const;

export type ContainerKey = keyof typeof CONTAINERS;
export type ContainerName = (typeof CONTAINERS)[ContainerKey];
export const ALL_CONTAINERS: readonly ContainerName[] = Object.values(CONTAINERS);

/** Container the embedded runtime keeps its trigger receipts in (the Functions host uses the same one). */
export const HOST_CONTAINER = 'azure-webjobs-hosts';

/** Blob trigger paths, in the Functions binding syntax. */
export const TRIGGER_PATHS = {
  preprocess: `${CONTAINERS.uploads}/{name}`,
  infer: `${CONTAINERS.preprocessed}/{name}.npy`,
} as const;

const MAX_BLOB_NAME = 1024;
const SUFFIX_ROOM = 16;

/** Why an upload name cannot be used as-is; undefined when it can. */
export function invalidUploadName(name: string): string | undefined {
  if (name.length === 0) return 'the name is empty';
  if (name.length > MAX_BLOB_NAME - SUFFIX_ROOM) return `the name is longer than ${MAX_BLOB_NAME - SUFFIX_ROOM} characters`;
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return 'the name contains a control character or a backslash';
  if (name.startsWith('/') || name.endsWith('/') || name.endsWith('.')) return 'the name starts with "/" or ends with "/" or "."';
  if (name.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) return 'the name has an empty, "." or ".." path segment';
  return undefined;
}

/** Blob names derived from an upload name. Upload names keep their virtual folders as they are. */
export const paths = {
  upload: (name: string) => name,
  preprocessed: (name: string) => `${name}.npy`,
  /** The record versions before 2026-11-29 wrote beside the .npy; now the .npy's metadata holds it. */
  legacyPreprocessedMeta: (name: string) => `${name}.json`,
  prediction: (name: string) => `${name}.json`,
  flagged: (name: string) => `${name}.json`,
  rejected: (name: string) => `${name}.json`,
  label: (name: string) => `${name}.json`,
  modelDir: (version: string) => `${version}/`,
  modelFile: (version: string, file: string) => `${version}/${file}`,
  modelCard: (version: string) => `${version}/card.json`,
  currentModel: () => 'current.json',
  runManifest: (runId: string) => `${runId}/manifest.json`,
  runReport: (runId: string) => `${runId}/report.json`,
  /** queued -> running -> succeeded | failed, with the outcome (see src/jobs/runs.ts). */
  runStatus: (runId: string) => `${runId}/status.json`,
  /** Plots and the trainer's output, beside the report. */
  runFile: (runId: string, file: string) => `${runId}/${file}`,
  /** The blob whose lease serialises starting runs (one run starts at a time). */
  runLock: () => 'retrain.lock',
  /** The run started last: { runId, createdAt } (read and written under the lock's lease). */
  runActive: () => 'active.json',
  receipts: (fn: string) => `triage-local-receipts/${fn}.json`,
  poison: (fn: string, container: string, blob: string) => `triage-local-poison/${fn}/${container}/${blob}.json`,
} as const;

/** Inverse of the `.json` record paths: the upload name a record belongs to. */
export function uploadNameFromRecord(blobName: string): string | undefined {
  return blobName.endsWith('.json') ? blobName.slice(0, -'.json'.length) : undefined;
}

/** Inverse of paths.preprocessed. */
export function uploadNameFromPreprocessed(blobName: string): string | undefined {
  return blobName.endsWith('.npy') ? blobName.slice(0, -'.npy'.length) : undefined;
}

/**
 * Matches a blob against a trigger path such as `preprocessed/{name}.npy`. Returns the binding
 * values, or undefined when the blob is not the trigger's. `{name}` spans virtual folders.
 */
const compiledPatterns = new Map<string, { container: string; re: RegExp; names: string[] }>();

function compileTriggerPath(triggerPath: string): { container: string; re: RegExp; names: string[] } {
  const cached = compiledPatterns.get(triggerPath);
  if (cached !== undefined) return cached;
  const slash = triggerPath.indexOf('/');
  const container = slash < 0 ? triggerPath : triggerPath.slice(0, slash);
  const pattern = slash < 0 ? '{name}' : triggerPath.slice(slash + 1);
  const names: string[] = [];
  const source = pattern.replace(/\{(\w+)\}|([^{}]+)/g, (_m, param: string | undefined, lit: string | undefined) => {
    if (param !== undefined) {
      names.push(param);
      return '(.+)';
    }
    return (lit ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  const compiled = { container, re: new RegExp(`^${source}$`, 's'), names };
  compiledPatterns.set(triggerPath, compiled);
  return compiled;
}

export function matchTriggerPath(triggerPath: string, container: string, blobName: string): Record<string, string> | undefined {
  const { container: pathContainer, re, names } = compileTriggerPath(triggerPath);
  if (pathContainer !== container) return undefined;
  const m = re.exec(blobName);
  if (!m) return undefined;
  const out: Record<string, string> = {};
  names.forEach((n, i) => {
    out[n] = m[i + 1] ?? '';
  });
  return out;
}
