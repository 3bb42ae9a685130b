/**
 * A run whose trainer dies without a word does not block retraining: the retrain timer (and
 * `triage runs show`, GET /api/runs/{id}) asks the launcher whether the trainer still runs, and a
 * run whose trainer ended without an outcome is marked failed, so a new run starts.
 *  - Azure: the Container Apps job execution, started and read by the real ARM client
 *    (@azure/arm-appcontainers) over HTTP from a local server standing in for Resource Manager;
 *  - local: the trainer's process, a real child process.
 * Against Azurite; no trainer actually trains here.
 */
import { ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { Command } from 'commander';
import { loadConfig } from '../../../src/config';
import { buildDeps, Deps } from '../../../src/composition';
import { handleGetRun, handleRetrain } from '../../../src/handlers/retrain';
import type { Log } from '../../../src/util/log';
import { registerRetrainCommands } from '../../../src/cli/commands/retrain';
import {
  AzureJobLauncher,
  containerAppsJobsApi,
  ExecutionTemplate,
  JobsApi,
  Launcher,
  LocalLauncher,
} from '../../../src/jobs/launchers';
import { readStatus, updateStatus } from '../../../src/jobs/runs';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import type { BlobStore } from '../../../src/storage/blobStore';
import { fakeArm, FakeArm, tokenCredential } from '../../helpers/arm';
import { freshStore } from '../../helpers/azurite';
import { retrainConfig, writeLabeled } from './helpers';

/** A log that keeps what was said. */
function recordingLog(): Log & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
}

const azureSettings = {
  AzureWebJobsStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
  AZURE_SUBSCRIPTION_ID: '00000000-1111-2222-3333-444444444444',
  TRAINER_JOB_NAME: 'caj-train',
  TRAINER_JOB_RESOURCE_GROUP: 'rg-triage',
  TRAINER_IMAGE: 'acr.azurecr.io/image-triage-trainer:latest',
  TRAINER_CLIENT_ID: '11111111-2222-3333-4444-555555555555',
};

describe('retraining notices a trainer that died without recording an outcome', () => {
  let store: BlobStore;
  let deps: Deps;
  let log: ReturnType<typeof recordingLog>;
  beforeEach(async () => {
    store = await freshStore();
    deps = buildDeps(retrainConfig({ RETRAIN_MIN_NEW_LABELS: '3' }), { store });
    log = recordingLog();
    await writeLabeled(store, { prefix: 'live', from: 0, count: 3 });
  });
  afterEach(() => deps.models.dispose());

  describe('Azure Container Apps job', () => {
    let arm: FakeArm;
    let started: string[];
    let launcher: AzureJobLauncher;
    beforeEach(async () => {
      arm = await fakeArm();
      started = [];
      // Starting: each start is a new execution exec-1, exec-2, ..., Running at first.
      const azure = loadConfig(azureSettings);
      const real = containerAppsJobsApi(azure.trainerJob!, arm.client(tokenCredential()));
      const api: JobsApi = {
        start: async (template: ExecutionTemplate) => {
          const name = `exec-${started.length + 1}`;
          started.push(name);
          arm.starts.push({ name });
          arm.executions.set(name, { status: 'Running' });
          return real.start(template);
        },
        execution: (name) => real.execution(name),
      };
      launcher = new AzureJobLauncher(azure, azure.trainerJob!, { api });
    });
    afterEach(async () => arm.close());

    const tick = () => handleRetrain({ requestedBy: 'timer' }, deps, log, { launcher });

    it('keeps one run while its execution runs, marks it failed once the execution failed, and starts a new one', async () => {
      const first = await tick();
      if (!first.started) throw new Error(`no run: ${first.message}`);
      expect(first.status.launcher).toEqual({ kind: 'azure', execution: 'exec-1' });

      // The execution runs: the next tick asks Resource Manager and starts nothing.
      const busy = await tick();
      expect(busy).toMatchObject({ started: false, reason: 'run-in-progress', activeRunId: first.runId });
      expect(busy.started === false && busy.message).toContain('trainer job execution exec-1 of caj-train is Running');
      expect(
        arm.requests.filter((r) => r.url.includes('/executions/')).map((r) => [r.method, r.url, r.authorization]),
      ).toEqual([
        [
          'GET',
          '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-triage/providers/Microsoft.App/jobs/caj-train/executions/exec-1?api-version=2025-07-01',
          'Bearer arm-token-1',
        ],
      ]);

      // The replica dies (out of memory) before the trainer writes anything: the execution fails.
      arm.executions.set('exec-1', { status: 'Failed', endTime: '2026-11-30T02:41:00Z' });
      const next = await tick();
      if (!next.started) throw new Error(`no new run: ${next.message}`);
      expect(next.runId).not.toBe(first.runId);
      expect(started).toEqual(['exec-1', 'exec-2']);
      const dead = (await readStatus(store, first.runId))?.value;
      expect(dead).toMatchObject({ state: 'failed' });
      expect(dead?.error).toBe(
        'the trainer ended without recording an outcome: trainer job execution exec-1 of caj-train is Failed (since 2026-11-30T02:41:00.000Z), while the run was still queued',
      );
      expect(dead?.history.map((h) => h.state)).toEqual(['queued', 'failed']);
      expect((await store.getJson<{ runId: string }>(CONTAINERS.runs, paths.runActive()))?.value.runId).toBe(
        next.runId,
      );
      expect(
        log.lines.some((l) =>
          l.startsWith(`warn run ${first.runId} failed: the trainer ended without recording an outcome`),
        ),
      ).toBe(true);
    });

    it('leaves the run alone when Resource Manager cannot be asked, and never asks about a finished run', async () => {
      const first = await tick();
      if (!first.started) throw new Error(`no run: ${first.message}`);
      arm.executions.set('exec-1', { httpStatus: 503, code: 'ServiceUnavailable', message: 'try later' });
      expect(await tick()).toMatchObject({ started: false, reason: 'run-in-progress' });
      expect((await readStatus(store, first.runId))?.value.state).toBe('queued');
      expect(
        log.lines.some(
          (l) =>
            l.includes('could not find out whether its trainer still runs') &&
            l.includes('HTTP 503 ServiceUnavailable: try later'),
        ),
      ).toBe(true);

      // The trainer records its outcome; whatever the execution says after that does not matter.
      await updateStatus(store, first.runId, () => ({ state: 'running' }));
      await updateStatus(store, first.runId, () => ({
        state: 'succeeded',
        outcome: 'not-promoted',
        reason: 'no better',
      }));
      arm.executions.set('exec-1', { status: 'Failed' });
      const asked = arm.requests.length;
      const after = await tick();
      expect(arm.requests.length).toBe(asked);
      expect((await readStatus(store, first.runId))?.value).toMatchObject({
        state: 'succeeded',
        outcome: 'not-promoted',
      });
      // (Its labels were judged: nothing new to train on.)
      expect(after).toMatchObject({ started: false, reason: 'too-few-new-labels' });
    });

    it('`triage runs show` and GET /api/runs/{id} report the execution, and record a dead one', async () => {
      const first = await tick();
      if (!first.started) throw new Error(`no run: ${first.message}`);
      const out: string[] = [];
      const program = registerRetrainCommands(new Command('triage').exitOverride(), {
        getStore: () => store,
        getDeps: () => deps,
        print: (l) => out.push(l),
        log,
        launcher: () => launcher,
      });
      await program.parseAsync(['node', 'triage', 'runs', 'show', first.runId]);
      expect(out).toContain('  trainer: running: trainer job execution exec-1 of caj-train is Running');

      const running = await handleGetRun(first.runId, deps, log, { launcher });
      expect(running).toMatchObject({ status: 200, body: { state: 'queued', trainer: { state: 'running' } } });

      arm.executions.set('exec-1', { status: 'Stopped', endTime: '2026-11-30T03:00:00Z' });
      const stopped = await handleGetRun(first.runId, deps, log, { launcher });
      expect(stopped).toMatchObject({
        status: 200,
        body: {
          state: 'failed',
          trainer: {
            state: 'ended',
            detail: 'trainer job execution exec-1 of caj-train is Stopped (since 2026-11-30T03:00:00.000Z)',
          },
        },
      });
      expect((await readStatus(store, first.runId))?.value.state).toBe('failed');

      out.length = 0;
      await program.parseAsync(['node', 'triage', 'runs', 'show', first.runId]);
      expect(out[0]).toBe(`run ${first.runId}: failed`);
      expect(out).toContain(
        '  error: the trainer ended without recording an outcome: trainer job execution exec-1 of caj-train is Stopped (since 2026-11-30T03:00:00.000Z), while the run was still queued',
      );
    });
  });

  describe('local child process', () => {
    const children: ChildProcess[] = [];
    afterEach(() => {
      for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
    const exited = (c: ChildProcess) =>
      new Promise<void>((resolve) =>
        c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
      );

    /**
     * Starts the trainer as a process that outlived the process that started it (an `npm start` or
     * `triage retrain` since stopped): a real child nobody in this process watches.
     */
    const previousProcess: Launcher = {
      kind: 'local',
      launch: async (runId) => {
        const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
          env: { ...process.env, RUN_ID: runId },
          stdio: 'ignore',
        });
        children.push(c);
        await new Promise<void>((resolve, reject) => c.once('spawn', resolve).once('error', reject));
        return { kind: 'local', pid: c.pid!, host: os.hostname() };
      },
    };

    it('keeps the run while its process lives, and marks it failed once the process is gone', async () => {
      const first = await handleRetrain({ requestedBy: 'timer' }, deps, log, { launcher: previousProcess });
      if (!first.started) throw new Error(`no run: ${first.message}`);
      const trainer = children[0]!;
      expect(first.status.launcher).toEqual({ kind: 'local', pid: trainer.pid, host: os.hostname() });

      // This process's launcher (as the next timer invocation builds it) finds the process alive.
      const quickExit = () =>
        new LocalLauncher(deps.config, store, {
          command: () => ({ command: process.execPath, args: ['-e', 'process.exit(0)'] }),
        });
      expect(await handleRetrain({ requestedBy: 'timer' }, deps, log, { launcher: quickExit() })).toMatchObject({
        started: false,
        reason: 'run-in-progress',
      });

      // The trainer is killed (out of memory, Ctrl-C of its terminal...) and writes nothing.
      trainer.kill('SIGKILL');
      await exited(trainer);
      const next = await handleRetrain({ requestedBy: 'timer' }, deps, log, { launcher: quickExit() });
      if (!next.started) throw new Error(`no new run: ${next.message}`);
      await next.launch.done;
      const dead = (await readStatus(store, first.runId))?.value;
      expect(dead?.state).toBe('failed');
      expect(dead?.error).toBe(
        `the trainer ended without recording an outcome: the local trainer (pid ${trainer.pid} on ${os.hostname()}) is no longer running, while the run was still queued`,
      );
    });

    it('sees a trainer started by another launcher of this process as running', async () => {
      const first = new LocalLauncher(deps.config, store, {
        command: () => ({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] }),
      });
      const r = await handleRetrain({ requestedBy: 'timer' }, deps, log, { launcher: first });
      if (!r.started) throw new Error(`no run: ${r.message}`);
      expect(r.status.launcher).toMatchObject({ kind: 'local', pid: r.launch.pid, host: os.hostname() });
      const other = new LocalLauncher(deps.config, store);
      expect(await other.check(r.runId, r.status.launcher!)).toEqual({
        state: 'running',
        detail: `the local trainer (pid ${r.launch.pid}) is a child of this process`,
      });
      // Its own launcher records its end as before.
      process.kill(r.launch.pid!, 'SIGKILL');
      await r.launch.done;
      expect((await readStatus(store, r.runId))?.value.error).toMatch(
        /the trainer exited \(signal SIGKILL\) without finishing the run/,
      );
      expect((await other.check(r.runId, r.status.launcher!)).state).toBe('ended');
    });
  });
});
