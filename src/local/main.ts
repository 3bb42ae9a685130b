#!/usr/bin/env node
/**
 * `npm start`: the main job on one machine. Starts Azurite (persisted in TRIAGE_LOCAL_DATA_DIR),
 * creates the containers and runs the function app until Ctrl-C, processing whatever lands in
 * uploads/. Settings come from the environment, then local.settings.json.
 */
import path from 'node:path';
import { ConfigError, loadConfig, STORAGE_SETTING } from '../config';
import { checkHttpPort, EmbeddedRuntime } from './runtime';
import { reviewPageUrl } from '../handlers/reviewPage';
import {
  acquireDataLock,
  AzuriteHandle,
  DataDirLockedError,
  DataLock,
  superviseAzurite,
} from '@image-triage/local-functions-host';
import { DEV_STORAGE, mergedSettings, projectRoot, removeEndpoint, writeEndpoint } from './settings';

async function main(): Promise<void> {
  const settings = mergedSettings();
  let azurite: AzuriteHandle | undefined;
  let lock: DataLock | undefined;
  let endpointDir: string | undefined;
  // Whatever ends this process (an error included; SIGKILL leaves a lock the next start takes over
  // once its Azurite, which ends with this process, has exited).
  const cleanUp = () => {
    if (endpointDir !== undefined) removeEndpoint(endpointDir);
    lock?.release();
  };
  process.once('exit', cleanUp);
  try {
    // Every setting is checked, the data folder locked and the HTTP port tried before Azurite
    // starts: a configuration error (or the runtime holding the folder) is the only thing said,
    // and nothing is left running.
    const embedded = settings[STORAGE_SETTING] === undefined || settings[STORAGE_SETTING] === DEV_STORAGE;
    const checked = loadConfig(embedded ? { ...settings, [STORAGE_SETTING]: DEV_STORAGE } : settings);
    const dataDir = path.resolve(projectRoot(), settings.TRIAGE_LOCAL_DATA_DIR ?? '.azurite');
    if (embedded) lock = await acquireDataLock(dataDir);
    await checkHttpPort(checked.localHttpPort);
    let azuriteLine: string | undefined;
    if (embedded && lock !== undefined) {
      // Restarted on the same port and data when it dies (the connection string stays valid).
      azurite = await superviseAzurite(
        { location: dataDir },
        {
          onRestart: (e) => {
            console.warn(
              `${new Date().toISOString()} WARN Azurite PID ${String(e.oldPid)} exited unexpectedly (${e.exit}); restarted as PID ${String(e.pid)} on the same port and data folder after ${e.downMs} ms`,
            );
            if (e.pid !== undefined) lock?.update({ azuritePid: e.pid });
          },
          onRestartFailed: (err, retryInMs) =>
            console.error(
              `${new Date().toISOString()} ERROR Azurite could not be restarted (trying again in ${retryInMs} ms): ${String(err).split('\n')[0] ?? ''}`,
            ),
        },
      );
      settings[STORAGE_SETTING] = azurite.connectionString;
      lock.update({ ...(azurite.pid !== undefined ? { azuritePid: azurite.pid } : {}), storage: azurite.blobEndpoint });
      azuriteLine = `Azurite (blob) on http://127.0.0.1:${azurite.port}, data in ${dataDir}`;
    }
    const config = loadConfig(settings);
    const runtime = await EmbeddedRuntime.start({
      config,
      settings,
      log: {
        info: (m) => console.log(`${new Date().toISOString()} ${m}`),
        warn: (m) => console.warn(`${new Date().toISOString()} WARN ${m}`),
        error: (m) => console.error(`${new Date().toISOString()} ERROR ${m}`),
      },
    });
    if (azurite !== undefined) {
      endpointDir = config.localDataDir;
      lock?.update({ http: `http://127.0.0.1:${runtime.httpPort}/api/` });
      writeEndpoint(config.localDataDir, {
        connectionString: azurite.connectionString,
        httpPort: runtime.httpPort,
        pid: process.pid,
        started: new Date().toISOString(),
      });
    }
    if (azuriteLine !== undefined) console.log(azuriteLine);
    console.log(`Functions: ${runtime.functions.map((f) => f.name).join(', ')}`);
    if (runtime.httpPort !== 0) console.log(`HTTP functions on http://127.0.0.1:${runtime.httpPort}/api/`);
    if (runtime.httpPort !== 0) {
      console.log(
        config.reviewAuth === 'off'
          ? 'Review page: off (TRIAGE_REVIEW_AUTH=off; local.settings.json sets local)'
          : `Review page: ${reviewPageUrl(runtime.httpPort)}`,
      );
    }
    console.log(`Watching uploads/. Upload with: npm run triage -- upload <file-or-folder>. Stop with Ctrl-C.`);
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      console.log(`${signal}: finishing running work...`);
      await runtime.stop();
      await azurite?.stop();
      cleanUp();
      console.log('stopped');
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
  } catch (err) {
    await azurite?.stop();
    cleanUp();
    if (err instanceof DataDirLockedError) {
      console.error(err.message);
      process.exit(3);
    }
    if (err instanceof ConfigError) {
      console.error(`Configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
