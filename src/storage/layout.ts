/**
 * The storage layout: every container and every blob path the system uses is named here and
 * nowhere else. Triggers (functions/), handlers, the CLI, tests and the Bicep templates all read it.
 * A path built here never leaves its container: a name that would is refused (InvalidNameError).
 */
import { createHash } from 'node:crypto';

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

/** Azure's limit on a blob name, in characters. */
export const MAX_BLOB_NAME = 1024;
/** The longest suffix a record path adds to an upload name (`.json`). */
const RECORD_SUFFIX = '.json';

/**
 * Rejection records of names that cannot carry a record of their own (too long, or a name no blob
 * may have) live under this folder, named by the SHA-256 of the name; the record holds the name.
 * No upload name may start with it (invalidUploadName), so it never collides with a real name.
 */
export const INVALID_NAMES_FOLDER = '~invalid-names/';

/** A name the layout refused to turn into a blob path: it would leave its container or is not a blob name. */
export class InvalidNameError extends Error {
  readonly code = 'invalid-name';
  constructor(
    readonly blobName: string,
    readonly reason: string,
  ) {
    super(
      `The name ${JSON.stringify(blobName.length > 200 ? `${blobName.slice(0, 200)}...` : blobName)} cannot be used: ${reason}.`,
    );
    this.name = 'InvalidNameError';
  }
}

/**
 * Why a string cannot be a blob name inside a container; undefined when it can. The storage SDK
 * resolves "." and ".." segments of a blob URL (so `../models/x` would address another container)
 * and Azure refuses names over 1,024 characters; a leading "/", a backslash or a control
 * character has no place in a blob name either. A trailing "/" is allowed: prefixes end with one.
 */
export function invalidBlobName(name: string): string | undefined {
  if (name.length === 0) return 'the name is empty';
  if (name.length > MAX_BLOB_NAME) return `the name is longer than ${MAX_BLOB_NAME} characters`;
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return 'the name contains a control character or a backslash';
  if (name.startsWith('/')) return 'the name starts with "/"';
  if (name.split('/').some((seg) => seg === '.' || seg === '..')) return 'the name has a "." or ".." path segment';
  return undefined;
}

/** The blob name, or an InvalidNameError: no path this module builds can leave its container. */
function blob(name: string): string {
  const why = invalidBlobName(name);
  if (why !== undefined) throw new InvalidNameError(name, why);
  return name;
}

/** Why an upload name cannot be used as-is; undefined when it can. */
export function invalidUploadName(name: string): string | undefined {
  if (name.length === 0) return 'the name is empty';
  if (name.length + RECORD_SUFFIX.length > MAX_BLOB_NAME) {
    return `the name is longer than ${MAX_BLOB_NAME - RECORD_SUFFIX.length} characters (its records, {name}${RECORD_SUFFIX}, must fit Azure's ${MAX_BLOB_NAME})`;
  }
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return 'the name contains a control character or a backslash';
  if (name.startsWith('/') || name.endsWith('/') || name.endsWith('.'))
    return 'the name starts with "/" or ends with "/" or "."';
  if (name.split('/').some((seg) => seg === '' || seg === '.' || seg === '..'))
    return 'the name has an empty, "." or ".." path segment';
  if (name.startsWith(INVALID_NAMES_FOLDER)) return `the folder ${INVALID_NAMES_FOLDER} is reserved`;
  return undefined;
}

/**
 * A name that came from outside (an HTTP route, a command line) and must name an upload: the
 * upload-name rule, so it can never address another container or a name no upload can have.
 */
export function checkUploadName(name: string): string {
  const why = invalidUploadName(name);
  if (why !== undefined) throw new InvalidNameError(name, why);
  return name;
}

const CLAIMS_FOLDER = 'triage-claims/';

/** Blob names derived from an upload name. Upload names keep their virtual folders as they are. */
export const paths = {
  upload: (name: string) => blob(name),
  preprocessed: (name: string) => blob(`${name}.npy`),
  /** The record versions before 2026-11-29 wrote beside the .npy; now the .npy's metadata holds it. */
  legacyPreprocessedMeta: (name: string) => blob(`${name}.json`),
  prediction: (name: string) => blob(`${name}.json`),
  flagged: (name: string) => blob(`${name}.json`),
  /**
   * `{name}.json`; for a name that cannot carry it (see INVALID_NAMES_FOLDER), a name derived from
   * its hash, so every upload, even one with an unusable name, gets its rejection record.
   */
  rejected: (name: string) =>
    invalidBlobName(`${name}.json`) === undefined && !name.startsWith(INVALID_NAMES_FOLDER)
      ? `${name}.json`
      : byHash('', name),
  label: (name: string) => blob(`${name}.json`),
  modelDir: (version: string) => blob(`${version}/`),
  modelFile: (version: string, file: string) => blob(`${version}/${file}`),
  modelCard: (version: string) => blob(`${version}/card.json`),
  currentModel: () => 'current.json',
  runManifest: (runId: string) => blob(`${runId}/manifest.json`),
  runReport: (runId: string) => blob(`${runId}/report.json`),
  /** queued -> running -> succeeded | failed, with the outcome (see src/jobs/runs.ts). */
  runStatus: (runId: string) => blob(`${runId}/status.json`),
  /** Plots and the trainer's output, beside the report. */
  runFile: (runId: string, file: string) => blob(`${runId}/${file}`),
  /** The blob whose lease serialises starting runs (one run starts at a time). */
  runLock: () => 'retrain.lock',
  /** The run started last: { runId, createdAt } (read and written under the lock's lease). */
  runActive: () => 'active.json',
  receipts: (fn: string) => blob(`triage-local-receipts/${fn}.json`),
  /** Work on a triggering blob claimed by an instance (src/storage/claims.ts); by hash, so every name fits. */
  claim: (fn: string, container: string, name: string) =>
    blob(byHash(`${CLAIMS_FOLDER}${fn}/`, `${container}/${name}`)),
  /** The folder every claim is under. */
  claimsFolder: () => CLAIMS_FOLDER,
  poison: (fn: string, container: string, name: string) => {
    const own = `triage-local-poison/${fn}/${container}/${name}.json`;
    return invalidBlobName(own) === undefined ? own : blob(byHash(`triage-local-poison/${fn}/${container}/`, name));
  },
} as const;

/** `{prefix}~invalid-names/{sha256 of name}.json`: where a record of a name that cannot carry one goes. */
function byHash(prefix: string, name: string): string {
  return `${prefix}${INVALID_NAMES_FOLDER}${createHash('sha256').update(name, 'utf8').digest('hex')}.json`;
}

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

export function matchTriggerPath(
  triggerPath: string,
  container: string,
  blobName: string,
): Record<string, string> | undefined {
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
