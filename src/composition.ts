/**
 * The composition root: builds the dependencies every handler receives. In Azure they are
 * built once per instance from the app settings; the embedded runtime runs each invocation
 * with its own (so several runtimes can live in one process, each on its own storage).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Config, loadConfig } from './config';
import { BlobStore } from './storage/blobStore';
import { ModelCache } from './registry/modelCache';

export interface Deps {
  config: Config;
  store: BlobStore;
  /** The promoted model, loaded on first use and refreshed when models/current.json changes. */
  models: ModelCache;
  now: () => Date;
  /** Identifies this instance in records (host name in Azure, runtime id locally). */
  instanceId: string;
}

export function buildDeps(config: Config, overrides: Partial<Omit<Deps, 'config'>> = {}): Deps {
  const store = overrides.store ?? BlobStore.fromConnection(config.storage);
  return {
    config,
    store,
    models:
      overrides.models ??
      new ModelCache(store, {
        backend: config.backend,
        refreshMs: config.modelRefreshMs,
        inferThreads: config.inferThreads,
      }),
    now: overrides.now ?? (() => new Date()),
    instanceId: overrides.instanceId ?? process.env.WEBSITE_INSTANCE_ID ?? process.env.HOSTNAME ?? `pid-${process.pid}`,
  };
}

const scoped = new AsyncLocalStorage<Deps>();
let processDeps: Deps | undefined;

/** Runs `fn` with `deps` as the dependencies of every handler it calls. */
export function runWithDeps<T>(deps: Deps, fn: () => T): T {
  return scoped.run(deps, fn);
}

/** The dependencies of the current invocation: the embedded runtime's, else the instance's. */
export function currentDeps(): Deps {
  const d = scoped.getStore();
  if (d !== undefined) return d;
  processDeps ??= buildDeps(loadConfig());
  return processDeps;
}
