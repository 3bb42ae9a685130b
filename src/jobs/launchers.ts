/**
 * Job launchers: how a queued run's trainer (`triage train-job --run <id>`) gets started.
 *
 *  - AzureJobLauncher: starts an execution of the GPU Container Apps job
 *    (ContainerAppsAPIClient.jobs.beginStart with an execution template) and keeps the execution's
 *    name from the start response. A template replaces the job's whole template, so it carries the
 *    image (the job itself is created with a placeholder), the resources and every environment
 *    variable the trainer reads (trainerEnv), not only RUN_ID.
 *  - LocalLauncher: runs the same trainer as a child process of this one: `node dist/src/cli/main.js
 *    train-job --run <id>`, also when this code runs from the TypeScript sources (tests: see
 *    src/util/compiled.ts). The child's output is kept as runs/{runId}/trainer.log, and a
 *    child that exits without finishing its run (crash, kill, out of memory) marks the run failed.
 *
 * Both can also say whether the trainer of a run they started still runs (check): the Azure one
 * reads the job execution by name (ContainerAppsAPIClient.jobExecution), the local one looks for the child's process. A run
 * whose trainer ended without recording an outcome is then marked failed (src/jobs/liveness.ts)
 * instead of blocking new runs until the stale-run limit.
 *
 * launcherFor(config) picks the Azure launcher when TRAINER_JOB_NAME is set, else the local one.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config, Env, TrainerJobConfig } from '../config';
import { STORAGE_SETTING } from '../config';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { Log } from '../util/log';
import { compiledPath } from '../util/compiled';
import { isFinished, LaunchRecord, markFailed, readStatus } from './runs';

export interface LaunchInfo {
  kind: 'azure' | 'local' | 'self';
  /** Azure: the job execution's name. */
  execution?: string;
  /** Local: the child's process id. */
  pid?: number;
  /** Local: the host the child runs on. */
  host?: string;
  /** Local: settles once the child exited and its run's record is complete. */
  done?: Promise<void>;
}

/**
 * Whether the trainer of a run still runs: running (or starting), ended (it will never record
 * anything more), or unknown (this launcher cannot tell; the detail says why).
 */
export interface TrainerState {
  state: 'running' | 'ended' | 'unknown';
  /** What was found, e.g. "trainer job execution caj-train-x-4kq2 is Failed". */
  detail: string;
}

export interface Launcher {
  readonly kind: LaunchInfo['kind'];
  launch(runId: string): Promise<LaunchInfo>;
  /**
   * Asks whether the trainer a run's status names (status.launcher, written from launch()'s answer)
   * still runs. Throws when it could not find out (Resource Manager unreachable, refused...).
   * Launchers without it (the trainer running itself, `self`) are never asked.
   */
  check?(runId: string, launched: LaunchRecord): Promise<TrainerState>;
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
export function azureTrainerEnv(
  config: Config,
  job: TrainerJobConfig,
  runId: string,
): Record<(typeof TRAINER_ENV_KEYS)[number], string> {
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
  };
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
  containers: {
    name: string;
    image: string;
    resources: { cpu: number; memory: string };
    env: { name: string; value: string }[];
  }[];
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

/**
 * What the launcher does with Resource Manager: start an execution of the trainer job, and read
 * one back. containerAppsJobsApi implements it with @azure/arm-appcontainers; tests inject that
 * same implementation with a client whose HTTP goes to a local stand-in for Resource Manager.
 */
export interface JobsApi {
  /**
   * Starts an execution with `template` and resolves with its name, taken from the start
   * response. Does not wait for the start operation to complete.
   */
  start(template: ExecutionTemplate): Promise<string>;
  /** The execution, or undefined when Resource Manager has none of that name (404). */
  execution(name: string): Promise<JobExecution | undefined>;
}

/** The Azure credential the launcher uses for Resource Manager. */
export type ArmCredential = import('@azure/identity').TokenCredential;

/**
 * The identity this app uses for Resource Manager: the user-assigned identity of AZURE_CLIENT_ID,
 * else DefaultAzureCredential (az login on a developer's machine). Loaded lazily: only Azure
 * deployments load @azure/identity.
 */
export function armCredential(config: Config): ArmCredential {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const identity = require('@azure/identity') as typeof import('@azure/identity');
  return config.azureClientId !== undefined
    ? new identity.ManagedIdentityCredential({ clientId: config.azureClientId })
    : new identity.DefaultAzureCredential();
}

/** What containerAppsJobsApi uses of ContainerAppsAPIClient. */
export type ContainerAppsClient = Pick<
  import('@azure/arm-appcontainers').ContainerAppsAPIClient,
  'jobs' | 'jobExecution'
>;

/** The ARM client, built lazily: only Azure deployments load @azure/arm-appcontainers. */
export function containerAppsClient(job: TrainerJobConfig, credential: ArmCredential): ContainerAppsClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ContainerAppsAPIClient } = require('@azure/arm-appcontainers') as typeof import('@azure/arm-appcontainers');
  return new ContainerAppsAPIClient(credential, job.subscriptionId);
}

/**
 * api-version of Microsoft.App jobs and executions: what @azure/arm-appcontainers 3.x speaks
 * (its default), for the start and the reads alike.
 */
export const CONTAINER_APPS_API_VERSION = '2025-07-01';

/** A Container Apps job execution as Resource Manager reports it. */
export interface JobExecution {
  name: string;
  /** Running, Processing, Stopped, Degraded, Failed, Unknown or Succeeded. */
  status: string;
  startTime?: string;
  endTime?: string;
}

function restStatus(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function restMessage(err: unknown): string {
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown } | null;
  const parts = [
    typeof e?.statusCode === 'number' ? `HTTP ${e.statusCode}` : '',
    typeof e?.code === 'string' ? `${e.code}:` : '',
    typeof e?.message === 'string' ? e.message : String(err),
  ];
  return parts.filter((p) => p !== '').join(' ');
}

/**
 * JobsApi on ContainerAppsAPIClient.
 *  - start: jobs.beginStart with the template, reading the execution's name from the start
 *    response itself (onResponse). The start is a long-running operation whose status lives at
 *    a location that an identity holding a role on the job only may be refused to read; the
 *    client looks at it once before it returns. The execution is tracked by its name through
 *    execution() instead (the liveness check), so a refused look at the operation after an
 *    accepted start changes nothing, and nothing polls it until done.
 *  - execution: ContainerAppsAPIClient.jobExecution (GET .../jobs/{job}/executions/{name}).
 */
export function containerAppsJobsApi(job: TrainerJobConfig, client: ContainerAppsClient): JobsApi {
  return {
    async start(template: ExecutionTemplate): Promise<string> {
      let accepted: { status: number; body: unknown } | undefined;
      try {
        await client.jobs.beginStart(job.resourceGroup, job.jobName, {
          template,
          onResponse: (raw, _flat, error) => {
            if (
              accepted === undefined &&
              error === undefined &&
              raw.request.method === 'POST' &&
              raw.status >= 200 &&
              raw.status < 300
            ) {
              accepted = { status: raw.status, body: raw.parsedBody };
            }
          },
        });
      } catch (err) {
        // Refused before the start was accepted: that is the answer. After it, this is the
        // client's one look at the operation (refused, or reporting a failure): the execution
        // exists, and its own status decides from here (the liveness check reads it).
        if (accepted === undefined) throw err;
      }
      const name = (accepted?.body as { name?: unknown } | undefined)?.name;
      if (typeof name !== 'string' || name === '') {
        throw new LaunchError(
          `the start was accepted (HTTP ${String(accepted?.status)}) but its response names no execution`,
        );
      }
      return name;
    },
    async execution(name: string): Promise<JobExecution | undefined> {
      let ex: Awaited<ReturnType<ContainerAppsClient['jobExecution']>>;
      try {
        ex = await client.jobExecution(job.resourceGroup, job.jobName, name);
      } catch (err) {
        if (restStatus(err) === 404) return undefined;
        throw new LaunchError(`GET execution ${name} of job ${job.jobName}: ${restMessage(err)}`, { cause: err });
      }
      if (typeof ex.status !== 'string')
        throw new LaunchError(`GET execution ${name} of job ${job.jobName}: the answer has no status`);
      const iso = (k: 'startTime' | 'endTime') =>
        ex[k] instanceof Date && !Number.isNaN(ex[k].getTime()) ? { [k]: ex[k].toISOString() } : {};
      return { name: ex.name ?? name, status: ex.status, ...iso('startTime'), ...iso('endTime') };
    },
  };
}

/** Execution states in which the trainer container may still run; the others are final. */
const EXECUTION_ACTIVE = new Set(['Running', 'Processing']);
const EXECUTION_ENDED = new Set(['Succeeded', 'Failed', 'Stopped', 'Degraded']);

export class AzureJobLauncher implements Launcher {
  readonly kind = 'azure' as const;
  private jobs: JobsApi | undefined;

  constructor(
    private readonly config: Config,
    private readonly job: TrainerJobConfig,
    opts: { api?: JobsApi } = {},
  ) {
    this.jobs = opts.api;
  }

  /** One client for starting and checking, as the app's identity. */
  private api(): JobsApi {
    return (this.jobs ??= containerAppsJobsApi(this.job, containerAppsClient(this.job, armCredential(this.config))));
  }

  async check(_runId: string, launched: LaunchRecord): Promise<TrainerState> {
    if (launched.execution === undefined) return { state: 'unknown', detail: 'no job execution was recorded for it' };
    const ex = await this.api().execution(launched.execution);
    if (ex === undefined)
      return { state: 'unknown', detail: `job ${this.job.jobName} has no execution ${launched.execution} (any more)` };
    const detail = `trainer job execution ${ex.name} of ${this.job.jobName} is ${ex.status}${ex.endTime !== undefined ? ` (since ${ex.endTime})` : ''}`;
    if (EXECUTION_ACTIVE.has(ex.status)) return { state: 'running', detail };
    if (EXECUTION_ENDED.has(ex.status)) return { state: 'ended', detail };
    return { state: 'unknown', detail };
  }

  async launch(runId: string): Promise<LaunchInfo> {
    const template = buildExecutionTemplate(this.config, this.job, runId);
    try {
      const execution = await this.api().start(template);
      return { kind: 'azure', execution };
    } catch (err) {
      throw new LaunchError(
        `could not start an execution of job ${this.job.jobName} in resource group ${this.job.resourceGroup}: ${err instanceof LaunchError ? err.message : restMessage(err)}`,
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

/**
 * `triage train-job --run <id>` for the child: the compiled CLI beside this file when running
 * from dist/; from the TypeScript sources (tests), the same CLI under dist/ (compiledPath).
 */
export function trainerCommand(runId: string, here: string = __filename): TrainerCommand & { env: Env } {
  const args = ['train-job', '--run', runId];
  const cliMain = path.resolve(path.dirname(here), '..', 'cli', 'main.js');
  if (here.endsWith('.js')) return { command: process.execPath, args: [cliMain, ...args], env: {} };
  try {
    return { command: process.execPath, args: [compiledPath(cliMain), ...args], env: {} };
  } catch (err) {
    throw new LaunchError(
      `the local trainer runs the compiled CLI: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
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

/** Local trainers this process started and has not seen exit, by run id (whichever LocalLauncher started them). */
const childrenOfThisProcess = new Map<string, number>();

/**
 * Whether process `pid` on this host is the trainer of `runId`: gone when no process has the pid,
 * or (pids are reused) when the process that has it is not that trainer: on Linux its environment
 * lacks RUN_ID=<runId>, which every local trainer gets; a process of another user (EPERM) is not
 * ours either. Without /proc a live pid is taken at its word; with /proc but no right to read
 * the environment, unknown.
 */
export function trainerProcessState(pid: number, runId: string): 'running' | 'gone' | 'unknown' {
  try {
    process.kill(pid, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH' || code === 'EPERM') return 'gone';
    throw err;
  }
  if (!fs.existsSync('/proc/self/environ')) return 'running';
  let environ: string;
  try {
    environ = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return 'gone'; // exited meanwhile
    if (code === 'EACCES' || code === 'EPERM') return 'unknown'; // may not look: cannot tell whose it is
    throw err;
  }
  return environ.split('\0').includes(`RUN_ID=${runId}`) ? 'running' : 'gone';
}

export class LocalLauncher implements Launcher {
  readonly kind = 'local' as const;
  /** Children still running, by run id. */
  readonly running = new Map<string, Promise<void>>();

  async check(runId: string, launched: LaunchRecord): Promise<TrainerState> {
    const own = childrenOfThisProcess.get(runId);
    if (own !== undefined)
      return { state: 'running', detail: `the local trainer (pid ${own}) is a child of this process` };
    if (launched.pid === undefined) return { state: 'unknown', detail: 'no process id was recorded for it' };
    const here = os.hostname();
    if (launched.host !== here)
      return {
        state: 'unknown',
        detail: `its process (pid ${launched.pid}) runs on ${launched.host ?? 'an unrecorded host'}, not on ${here}`,
      };
    const state = trainerProcessState(launched.pid, runId);
    const what = `the local trainer (pid ${launched.pid} on ${here})`;
    if (state === 'running') return { state: 'running', detail: `${what} is running` };
    if (state === 'gone') return { state: 'ended', detail: `${what} is no longer running` };
    return {
      state: 'unknown',
      detail: `${what}: pid ${launched.pid} is in use, but its environment cannot be read to tell whether it is that trainer`,
    };
  }

  constructor(
    private readonly config: Config,
    private readonly store: BlobStore,
    private readonly opts: LocalLauncherOptions = {},
  ) {}

  async launch(runId: string): Promise<LaunchInfo> {
    const cmd = (this.opts.command ?? trainerCommand)(runId);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries({
      ...localTrainerEnv(this.config, runId),
      ...(cmd.env ?? {}),
      ...(this.opts.env ?? {}),
    })) {
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
            await this.store.put(CONTAINERS.runs, paths.runFile(runId, 'trainer.log'), output, {
              contentType: 'text/plain; charset=utf-8',
            });
            const status = await readStatus(this.store, runId);
            if (status !== undefined && !isFinished(status.value.state)) {
              const lastLine = output.toString('utf8').trim().split('\n').pop() ?? '';
              const why =
                spawnError !== undefined
                  ? `the trainer could not be started: ${spawnError.message}`
                  : `the trainer exited (${signal !== null ? `signal ${signal}` : `code ${String(code)}`}) without finishing the run${lastLine !== '' ? `; last output: ${lastLine.slice(0, 500)}` : ''}`;
              await markFailed(this.store, runId, why);
              log?.error(`run ${runId}: ${why}`);
            } else {
              log?.info(`run ${runId}: local trainer exited with code ${String(code)}`);
            }
          } catch (err) {
            log?.error(`run ${runId}: could not record the trainer's exit: ${String(err)}`);
          } finally {
            this.running.delete(runId);
            if (childrenOfThisProcess.get(runId) === child.pid) childrenOfThisProcess.delete(runId);
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
    childrenOfThisProcess.set(runId, child.pid);
    return { kind: 'local', pid: child.pid, host: os.hostname(), done };
  }
}

/** The launcher of the settings: the Azure job when TRAINER_JOB_NAME is set, else a local child process. */
export function launcherFor(config: Config, store: BlobStore, opts: { log?: Log; api?: JobsApi } = {}): Launcher {
  if (config.trainerJob !== undefined) {
    return new AzureJobLauncher(config, config.trainerJob, opts.api !== undefined ? { api: opts.api } : {});
  }
  return new LocalLauncher(config, store, opts.log !== undefined ? { log: opts.log } : {});
}
