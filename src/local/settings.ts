/**
 * Local settings, read the way Core Tools reads them: `local.settings.json` Values fill in what
 * the environment does not set. When the storage setting says UseDevelopmentStorage=true, the
 * embedded Azurite's real endpoint (written by `npm start` to its data folder) is used.
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Env, STORAGE_SETTING } from '../config';
import { processAlive } from '@image-triage/local-functions-host';

export const DEV_STORAGE = 'UseDevelopmentStorage=true';

export function projectRoot(): string {
  return path.resolve(
    __dirname,
    '..',
    '..',
    ...(path.basename(path.resolve(__dirname, '..', '..')) === 'dist' ? ['..'] : []),
  );
}

export function readLocalSettings(file = path.join(projectRoot(), 'local.settings.json')): Env {
  if (!existsSync(file)) return {};
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { Values?: Record<string, unknown> };
  const out: Env = {};
  for (const [k, v] of Object.entries(parsed.Values ?? {})) out[k] = String(v);
  return out;
}

/**
 * Environment first, then local.settings.json. A storage connection set in the environment in
 * either form (connection string or identity-based keys) replaces the local file's whole storage
 * setting, so `AzureWebJobsStorage__blobServiceUri=...` reaches Azure even though the file says
 * UseDevelopmentStorage=true.
 */
export function mergedSettings(env: Env = process.env, file?: string): Env {
  const local = readLocalSettings(file);
  const fromEnv = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const isStorageKey = (k: string) => k === STORAGE_SETTING || k.startsWith(`${STORAGE_SETTING}__`);
  if (Object.keys(fromEnv).some(isStorageKey)) {
    for (const k of Object.keys(local)) if (isStorageKey(k)) delete local[k];
  }
  return { ...local, ...fromEnv };
}

export interface RuntimeEndpoint {
  connectionString: string;
  httpPort: number;
  pid: number;
  started: string;
}

export function endpointFile(dataDir: string): string {
  return path.join(path.resolve(projectRoot(), dataDir), 'runtime.json');
}

export function writeEndpoint(dataDir: string, ep: RuntimeEndpoint): void {
  const f = endpointFile(dataDir);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, JSON.stringify(ep, null, 2) + '\n');
}

export function readEndpoint(dataDir: string): RuntimeEndpoint | undefined {
  const f = endpointFile(dataDir);
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as RuntimeEndpoint;
}

/** Removes runtime.json (the runtime that wrote it is stopping). */
export function removeEndpoint(dataDir: string): void {
  rmSync(endpointFile(dataDir), { force: true });
}

/**
 * Settings for a tool that talks to the local system (the CLI): UseDevelopmentStorage=true is
 * replaced by the running embedded runtime's Azurite endpoint, if one is running.
 */
export function resolveLocalStorage(settings: Env): Env {
  if (settings[STORAGE_SETTING] !== DEV_STORAGE) return settings;
  const ep = readEndpoint(settings.TRIAGE_LOCAL_DATA_DIR ?? '.azurite');
  if (ep === undefined || !processAlive(ep.pid)) {
    throw new Error(
      `${STORAGE_SETTING} is ${DEV_STORAGE}, but no embedded runtime is running (start it with \`npm start\`), ` +
        `or set ${STORAGE_SETTING} to a connection string.`,
    );
  }
  return { ...settings, [STORAGE_SETTING]: ep.connectionString };
}
