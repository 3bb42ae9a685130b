/**
 * Job launchers: how a queued run's trainer (`triage train-job --run <id>`) gets started.
 *
 *  - AzureJobLauncher: starts an execution of the GPU Container Apps job
 *    (ContainerAppsAPIClient.jobs.beginStart with an execution template). A template replaces the
 *    job's whole template, so it carries the image, the resources and every environment variable
 *    the trainer reads (trainerEnv), not only RUN_ID.
 *  - LocalLauncher: runs the same trainer as a child process of this one: `node dist/src/cli/main.js
 *    train-job --run <id>` when this code runs compiled; when it runs from the TypeScript sources
 *    (ts-jest, scripts), node loads src/cli/main.ts through an in-memory `typescript.transpileModule`
 *    hook, so no build is needed. The child's output is kept as runs/{runId}/trainer.log, and a
 *    child that exits without finishing its run (crash, kill, out of memory) marks the run failed.
 *
 * launcherFor(config) picks the Azure launcher when TRAINER_JOB_NAME is set, else the local one.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Config, Env, TrainerJobConfig } from '../config';
import { STORAGE_SETTING } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { Log } from '../handlers/types';
import { isFinished, markFailed, readStatus } from './runs';

export interface LaunchInfo {
  kind: 'azure' | 'local' | 'self';
  /** Azure: the job execution's name. */
  execution?: string;
  /** Local: the child's process id. */
  pid?: number;
  /** Local: settles once the child exited and its run's record is complete. */
  done?: Promise<void>;
}

export interface Launcher {
  readonly kind: LaunchInfo['kind'];
  launch(runId: string): Promise<LaunchInfo>;
}

/** Every environment variable the trainer reads (infra/modules/trainer.bicep sets the same names on the job). */
export const TRAINER_ENV_KEYS = [
  `${STORAGE_SETTING}__blobServiceUri`,
  `${STORAGE_SETTING}__credential`,
  `${STORAGE_SETTING}__clientId`,
  'AZURE_CLIENT_ID',
  'TRIAGE_BACKEND',
  'TRIAGE_PROFILE',
  'TRIAGE_XRAY_SIZE',
  'RUN_ID',
] as const;

export class LaunchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LaunchError';
  }
}

/**
 * The trainer job's environment in Azure: storage through the job's own managed identity, the
 * tensorflow backend (tfjs-node-gpu in the image), the preprocessing profile and the run id.
 * Everything else the trainer needs is in the run manifest.
 */
export function azureTrainerEnv(config: Config, job: TrainerJobConfig, runId: string): Record<(typeof TRAINER_ENV_KEYS)[number], string> {
  if (config.storage.kind !== 'identity') {
    throw new LaunchError(
      `the trainer job reaches storage with its managed identity, but this app uses a connection string (${STORAGE_SETTING}); set ${STORAGE_SETTING}__blobServiceUri instead`,
    );
  }
  return {
    [`${STORAGE_SETTING}__blobServiceUri`]: config.storage.blobServiceUri,
    [`${STORAGE_SETTING}__credential`]: 'managedidentity',
    [`${STORAGE_SETTING}__clientId`]: job.clientId,
    AZURE_CLIENT_ID: job.clientId,
    TRIAGE_BACKEND: 'tensorflow',
    TRIAGE_PROFILE: config.profile,
    TRIAGE_XRAY_SIZE: String(config.xraySize),
    RUN_ID: runId,
  } as Record<(typeof TRAINER_ENV_KEYS)[number], string>;
}

/** The local trainer's environment: this process's storage connection and settings, plus RUN_ID. */
export function localTrainerEnv(config: Config, runId: string): Env {
  const env: Env = {
    TRIAGE_PROFILE: config.profile,
    TRIAGE_XRAY_SIZE: String(config.xraySize),
    RUN_ID: runId,
  };
  if (config.backend !== undefined) env.TRIAGE_BACKEND = config.backend;
  if (config.storage.kind === 'connectionString') {
    env[STORAGE_SETTING] = config.storage.connectionString;
  } else {
    env[STORAGE_SETTING] = undefined;
    env[`${STORAGE_SETTING}__blobServiceUri`] = config.storage.blobServiceUri;
    if (config.storage.clientId !== undefined) env[`${STORAGE_SETTING}__clientId`] = config.storage.clientId;
  }
  if (config.azureClientId !== undefined) env.AZURE_CLIENT_ID = config.azureClientId;
  return env;
}

/** The container of the trainer job as the bicep template declares it. */
export const TRAINER_CONTAINER_NAME = 'trainer';

export interface ExecutionTemplate {
  containers: { name: string; image: string; resources: { cpu: number; memory: string }; env: { name: string; value: string }[] }[];
}

/** The execution template of one run: the job's whole template (image, resources, every env var). */
export function buildExecutionTemplate(config: Config, job: TrainerJobConfig, runId: string): ExecutionTemplate {
  const env = azureTrainerEnv(config, job, runId);
  return {
    containers: [
      {
        name: TRAINER_CONTAINER_NAME,
        image: job.image,
        resources: { cpu: job.cpu, memory: job.memory },
        env: TRAINER_ENV_KEYS.map((name) => ({ name, value: env[name] })),
      },
    ],
  };
}

/** The slice of ContainerAppsAPIClient the launcher uses (injectable for tests). */
export interface JobsApi {
  beginStart(resourceGroupName: string, jobName: string, options: { template: ExecutionTemplate }): Promise<{ pollUntilDone(): Promise<{ name?: string; id?: string }> }>;
}

/** The ARM client, built lazily: only Azure deployments load @azure/arm-appcontainers and @azure/identity. */
export function defaultJobsApi(config: Config, job: TrainerJobConfig): JobsApi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const identity = require('@azure/identity') as typeof import('@azure/identity');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ContainerAppsAPIClient } = require('@azure/arm-appcontainers') as typeof import('@azure/arm-appcontainers');
  const credential =
    config.azureClientId !== undefined ? new identity.ManagedIdentityCredential({ clientId: config.azureClientId }) : new identity.DefaultAzureCredential();
  return new ContainerAppsAPIClient(credential, job.subscriptionId).jobs;
}

export class AzureJobLauncher implements Launcher {
  readonly kind = 'azure' as const;
  private api: JobsApi | undefined;

  constructor(
    private readonly config: Config,
    private readonly job: TrainerJobConfig,
    private readonly opts: { api?: JobsApi } = {},
  ) {
    this.api = opts.api;
  }

  async launch(runId: string): Promise<LaunchInfo> {
    const template = buildExecutionTemplate(this.config, this.job, runId);
    this.api ??= defaultJobsApi(this.config, this.job);
    try {
      const poller = await this.api.beginStart(this.job.resourceGroup, this.job.jobName, { template });
      const execution = await poller.pollUntilDone();
      return { kind: 'azure', ...(execution.name !== undefined ? { execution: execution.name } : {}) };
    } catch (err) {
      throw new LaunchError(
        `could not start an execution of job ${this.job.jobName} in resource group ${this.job.resourceGroup}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
}

/** How the child process runs the trainer. */
export interface TrainerCommand {
  /** Executable (default: this node). */
  command: string;
  args: string[];
}

const TS_BOOT = `
const ts = require(process.env.TRIAGE_TS_COMPILER);
const fs = require('node:fs');
require.extensions['.ts'] = function (module, filename) {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true, inlineSourceMap: true },
  });
  module._compile(out.outputText, filename);
};
const args = JSON.parse(process.env.TRIAGE_TS_ARGS);
require(process.env.TRIAGE_TS_MAIN).run(['node', 'triage', ...args]).then((code) => process.exit(code), (err) => { console.error(err); process.exit(1); });
`;

/**
 * `triage train-job --run <id>` for the child: the compiled CLI beside this file when running
 * from dist/, else the TypeScript CLI through the transpile hook (needs the typescript package,
 * a dev dependency, which is there whenever the sources run).
 */
export function trainerCommand(runId: string, here: string = __filename): TrainerCommand & { env: Env } {
  const args = ['train-job', '--run', runId];
  const cliDir = path.resolve(path.dirname(here), '..', 'cli');
  if (here.endsWith('.js')) return { command: process.execPath, args: [path.join(cliDir, 'main.js'), ...args], env: {} };
  let compiler: string;
  try {
    compiler = require.resolve('typescript');
  } catch {
    throw new LaunchError('the local launcher runs from TypeScript sources but the typescript package is not installed: build first (npm run build) and run dist/');
  }
  return {
    command: process.execPath,
    args: ['-e', TS_BOOT],
    env: { TRIAGE_TS_COMPILER: compiler, TRIAGE_TS_MAIN: path.join(cliDir, 'main.ts'), TRIAGE_TS_ARGS: JSON.stringify(args) },
  };
}

export interface LocalLauncherOptions {
  log?: Log;
  /** Extra environment for the child (after localTrainerEnv). */
  env?: Env;
  /** Bytes of the child's output kept for runs/{runId}/trainer.log. Default 256 KiB (the end is kept). */
  maxLogBytes?: number;
  /** Overrides the command (tests); default trainerCommand(runId). */
  command?: (runId: string) => TrainerCommand & { env?: Env };
}

export class LocalLauncher implements Launcher {
  readonly kind = 'local' as const;
  /** Children still running, by run id. */
  readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly config: Config,
    private readonly store: BlobStore,
    private readonly opts: LocalLauncherOptions = {},
  ) {}

  async launch(runId: string): Promise<LaunchInfo> {
    const cmd = (this.opts.command ?? trainerCommand)(runId);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries({ ...localTrainerEnv(this.config, runId), ...(cmd.env ?? {}), ...(this.opts.env ?? {}) })) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const child = spawn(cmd.command, cmd.args, { env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const max = this.opts.maxLogBytes ?? 256 * 1024;
    let chunks: Buffer[] = [];
    let size = 0;
    const keep = (b: Buffer) => {
      chunks.push(b);
      size += b.length;
      if (size > 2 * max) {
        const all = Buffer.concat(chunks).subarray(-max);
        chunks = [all];
        size = all.length;
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const log = this.opts.log;
    const done = new Promise<void>((resolve) => {
      let spawnError: Error | undefined;
      child.once('error', (e) => {
        spawnError = e;
      });
      child.once('close', (code, signal) => {
        void (async () => {
          const output = Buffer.concat(chunks).subarray(-max);
          try {
            await this.store.put(CONTAINERS.runs, paths.runFile(runId, 'trainer.log'), output, { contentType: 'text/plain; charset=utf-8' });
            const status = await readStatus(this.store, runId);
            if (status !== undefined && !isFinished(status.value.state)) {
              const lastLine = output.toString('utf8').trim().split('\n').pop() ?? '';
              const why = spawnError !== undefined ? `the trainer could not be started: ${spawnError.message}` : `the trainer exited (${signal !== null ? `signal ${signal}` : `code ${String(code)}`}) without finishing the run${lastLine !== '' ? `; last output: ${lastLine.slice(0, 500)}` : ''}`;
              await markFailed(this.store, runId, why);
              log?.error(`run ${runId}: ${why}`);
            } else {
              log?.info(`run ${runId}: local trainer exited with code ${String(code)}`);
            }
          } catch (err) {
            log?.error(`run ${runId}: could not record the trainer's exit: ${String(err)}`);
          } finally {
            this.running.delete(runId);
            resolve();
          }
        })();
      });
    });
    this.running.set(runId, done);
    if (child.pid === undefined) {
      await done;
      throw new LaunchError(`could not start the local trainer (${cmd.command})`);
    }
    return { kind: 'local', pid: child.pid, done };
  }
}

/** The launcher of the settings: the Azure job when TRAINER_JOB_NAME is set, else a local child process. */
export function launcherFor(config: Config, store: BlobStore, opts: { log?: Log; api?: JobsApi } = {}): Launcher {
  if (config.trainerJob !== undefined) return new AzureJobLauncher(config, config.trainerJob, opts.api !== undefined ? { api: opts.api } : {});
  return new LocalLauncher(config, store, opts.log !== undefined ? { log: opts.log } : {});
}
