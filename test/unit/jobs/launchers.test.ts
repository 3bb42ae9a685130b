import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config';
import {
  AzureJobLauncher,
  CONTAINER_APPS_API_VERSION,
  containerAppsJobsApi,
  trainerProcessState,
  TRAINER_ENV_KEYS,
  azureTrainerEnv,
  buildExecutionTemplate,
  launcherFor,
  localTrainerEnv,
  trainerCommand,
  LocalLauncher,
} from '../../../src/jobs/launchers';
import { BlobStore } from '../../../src/storage/blobStore';
import { compiledPath } from '../../../src/util/compiled';
import { arrayItems, getPath, loadBicep, objectEntries, resourcesOfType, stringLiteral } from '../infra/bicep';
import { fakeArm, FakeArm, tokenCredential } from '../../helpers/arm';

type ExecutionTemplateBody = ReturnType<typeof buildExecutionTemplate>;

const TRAINER_ID = '11111111-2222-3333-4444-555555555555';
const APP_ID = '99999999-8888-7777-6666-555555555555';

/** The function app's settings in Azure (infra/modules/functionapp.bicep). */
const azureSettings = {
  AzureWebJobsStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
  AzureWebJobsStorage__clientId: APP_ID,
  AZURE_CLIENT_ID: APP_ID,
  TRIAGE_PROFILE: 'xray',
  TRIAGE_XRAY_SIZE: '256',
  AZURE_SUBSCRIPTION_ID: '00000000-1111-2222-3333-444444444444',
  TRAINER_JOB_NAME: 'triage-trainer',
  TRAINER_JOB_RESOURCE_GROUP: 'rg-triage',
  TRAINER_IMAGE: 'acr.azurecr.io/image-triage-trainer:latest',
  TRAINER_CPU: '8',
  TRAINER_MEMORY: '56Gi',
  TRAINER_CLIENT_ID: TRAINER_ID,
};

describe('Azure Container Apps job launcher', () => {
  const config = loadConfig(azureSettings);
  const job = config.trainerJob!;

  it('reads the trainer job settings all together', () => {
    expect(job).toEqual({
      subscriptionId: '00000000-1111-2222-3333-444444444444',
      resourceGroup: 'rg-triage',
      jobName: 'triage-trainer',
      image: 'acr.azurecr.io/image-triage-trainer:latest',
      cpu: 8,
      memory: '56Gi',
      clientId: TRAINER_ID,
    });
    expect(config.azureClientId).toBe(APP_ID);
    expect(loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' }).trainerJob).toBeUndefined();
    const { TRAINER_IMAGE: _i, ...noImage } = azureSettings;
    expect(() => loadConfig(noImage)).toThrow(
      /TRAINER_IMAGE is missing; expected .*required when TRAINER_JOB_NAME is set/,
    );
    expect(() => loadConfig({ ...azureSettings, TRAINER_CPU: 'lots' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...azureSettings, TRAINER_MEMORY: '56 GB' })).toThrow(/TRAINER_MEMORY/);
    expect(() => loadConfig({ ...azureSettings, TRAINER_CLIENT_ID: 'trainer' })).toThrow(
      /TRAINER_CLIENT_ID has the value "trainer"/,
    );
  });

  it('builds an execution template with the image, the resources and every env var the trainer reads', () => {
    const t = buildExecutionTemplate(config, job, 'run-42');
    expect(t.containers).toHaveLength(1);
    const [c] = t.containers;
    expect(c).toMatchObject({
      name: 'trainer',
      image: 'acr.azurecr.io/image-triage-trainer:latest',
      resources: { cpu: 8, memory: '56Gi' },
    });
    const env = Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
    expect(Object.keys(env).sort()).toEqual([...TRAINER_ENV_KEYS].sort());
    for (const [k, v] of Object.entries(env)) expect({ k, v: v !== '' }).toEqual({ k, v: true });
    expect(env).toEqual({
      AzureWebJobsStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
      AzureWebJobsStorage__credential: 'managedidentity',
      // The trainer reaches storage as the job's identity, not the function app's.
      AzureWebJobsStorage__clientId: TRAINER_ID,
      AZURE_CLIENT_ID: TRAINER_ID,
      TRIAGE_BACKEND: 'tensorflow',
      TRIAGE_PROFILE: 'xray',
      TRIAGE_XRAY_SIZE: '256',
      RUN_ID: 'run-42',
    });
    // What the trainer does with it: a valid configuration on the job's identity.
    const trainerConfig = loadConfig(env);
    expect(trainerConfig.storage).toEqual({
      kind: 'identity',
      blobServiceUri: 'https://acct.blob.core.windows.net',
      clientId: TRAINER_ID,
    });
    expect(trainerConfig.backend).toBe('tensorflow');
    expect(trainerConfig.profile).toBe('xray');
  });

  it("sets every variable the job's own template in infra/modules/trainer.bicep sets (a start replaces it whole)", () => {
    const { root } = loadBicep('modules/trainer.bicep');
    const [jobDecl] = resourcesOfType(root, 'Microsoft.App/jobs');
    const container = arrayItems(getPath(jobDecl!.body, ['properties', 'template', 'containers']))[0]!;
    const bicepEnv = arrayItems(getPath(container, ['env'])).map((e) => stringLiteral(objectEntries(e).get('name')));
    expect(bicepEnv.length).toBeGreaterThan(0);
    expect(stringLiteral(getPath(container, ['name']))).toBe('trainer');
    const ours = buildExecutionTemplate(config, job, 'r1').containers[0]!.env.map((e) => e.name);
    for (const name of bicepEnv) expect(ours).toContain(name);
  });

  it('refuses to hand a connection string to the job', () => {
    const cs = loadConfig({ ...azureSettings, AzureWebJobsStorage: 'UseDevelopmentStorage=true' });
    expect(() => azureTrainerEnv(cs, cs.trainerJob!, 'r1')).toThrow(
      /managed identity.*AzureWebJobsStorage__blobServiceUri/,
    );
  });

  it('is chosen when a trainer job is configured, else the local launcher', () => {
    const store = BlobStore.fromConnection({
      kind: 'connectionString',
      connectionString: 'UseDevelopmentStorage=true',
    });
    expect(launcherFor(config, store).kind).toBe('azure');
    expect(launcherFor(loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' }), store)).toBeInstanceOf(
      LocalLauncher,
    );
  });
});

describe('local launcher', () => {
  it("gives the child this process's storage connection and settings, plus RUN_ID", () => {
    const c = loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true', TRIAGE_BACKEND: 'cpu' });
    expect(localTrainerEnv(c, 'r9')).toEqual({
      AzureWebJobsStorage: 'UseDevelopmentStorage=true',
      TRIAGE_BACKEND: 'cpu',
      TRIAGE_PROFILE: 'mnist',
      TRIAGE_XRAY_SIZE: '128',
      RUN_ID: 'r9',
    });
  });

  it('runs the compiled CLI: beside it from dist/, under dist/ from the sources', () => {
    const js = trainerCommand('r1', '/app/dist/src/jobs/launchers.js');
    expect(js.args).toEqual([path.join('/app/dist/src/cli/main.js'), 'train-job', '--run', 'r1']);
    expect(js.command).toBe(process.execPath);
    const ts = trainerCommand('r1', path.join(__dirname, '../../../src/jobs/launchers.ts'));
    expect(ts.command).toBe(process.execPath);
    expect(ts.args).toEqual([path.resolve(__dirname, '../../../dist/src/cli/main.js'), 'train-job', '--run', 'r1']);
    expect(fs.existsSync(ts.args[0] as string)).toBe(true);
  });

  it('says to build first when the sources have no compiled CLI', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'triage-nodist-'));
    try {
      expect(() => compiledPath('src/cli/main.ts', root)).toThrow(
        /dist\/src\/cli\/main\.js does not exist: build first \(npm run build\)/,
      );
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('Azure launcher over @azure/arm-appcontainers (against a local stand-in for Resource Manager)', () => {
  const config = loadConfig(azureSettings);
  const job = config.trainerJob!;
  const jobPath =
    '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-triage/providers/Microsoft.App/jobs/triage-trainer';
  let arm: FakeArm;
  let scopes: (string | string[])[];
  let launcher: AzureJobLauncher;
  beforeEach(async () => {
    arm = await fakeArm();
    scopes = [];
    launcher = new AzureJobLauncher(config, job, {
      api: containerAppsJobsApi(job, arm.client(tokenCredential(scopes))),
    });
  });
  afterEach(async () => arm.close());

  it('starts an execution with the whole template and keeps its name from the start response', async () => {
    arm.starts.push({ name: 'triage-trainer-abc12' });
    expect(await launcher.launch('run-7')).toEqual({ kind: 'azure', execution: 'triage-trainer-abc12' });
    expect(arm.requests[0]).toEqual({
      method: 'POST',
      url: `${jobPath}/start?api-version=${CONTAINER_APPS_API_VERSION}`,
      authorization: 'Bearer arm-token-1',
    });
    // The body is the execution template, with the real image (the job itself holds a placeholder).
    expect(arm.startBodies).toEqual([buildExecutionTemplate(config, job, 'run-7')]);
    expect((arm.startBodies[0] as ExecutionTemplateBody).containers[0]!.image).toBe(
      'acr.azurecr.io/image-triage-trainer:latest',
    );
    expect(scopes[0]).toEqual(['https://management.azure.com/.default']);
  });

  it('does not wait on the start operation: a refused look at it leaves the started execution tracked by name', async () => {
    // The default: the operation status answers 403, as for an identity holding a role on the job only.
    arm.starts.push({ name: 'exec-9' });
    expect(await launcher.launch('run-9')).toEqual({ kind: 'azure', execution: 'exec-9' });
    const polls = arm.requests.filter((r) => r.url.includes('containerappOperationStatuses'));
    // At most the client's own first look at the operation, never a loop until it completes.
    expect(polls.length).toBeLessThanOrEqual(1);
    // The execution is followed through the job-execution read instead.
    arm.executions.set('exec-9', { status: 'Running' });
    expect(await launcher.check('run-9', { kind: 'azure', execution: 'exec-9' })).toEqual({
      state: 'running',
      detail: 'trainer job execution exec-9 of triage-trainer is Running',
    });
    expect(arm.requests[arm.requests.length - 1]).toEqual({
      method: 'GET',
      url: `${jobPath}/executions/exec-9?api-version=${CONTAINER_APPS_API_VERSION}`,
      authorization: 'Bearer arm-token-1',
    });

    // An operation that is readable and still running is not waited for either.
    arm.operationStatus = { httpStatus: 200, body: { status: 'InProgress' } };
    arm.starts.push({ name: 'exec-10' });
    expect(await launcher.launch('run-10')).toEqual({ kind: 'azure', execution: 'exec-10' });
  });

  it('fails the launch when the start itself is refused', async () => {
    arm.starts.push({ httpStatus: 403, code: 'AuthorizationFailed', message: 'no start on this job' });
    await expect(launcher.launch('run-8')).rejects.toThrow(
      /could not start an execution of job triage-trainer in resource group rg-triage: .*AuthorizationFailed.*no start on this job/,
    );
  });

  it.each([
    ['Running', 'running'],
    ['Processing', 'running'],
    ['Failed', 'ended'],
    ['Stopped', 'ended'],
    ['Degraded', 'ended'],
    ['Succeeded', 'ended'],
    ['Unknown', 'unknown'],
  ])('reads execution status %s as %s', async (status, state) => {
    arm.executions.set('exec-1', { status, endTime: '2026-11-30T02:10:00Z' });
    const r = await launcher.check('run-1', { kind: 'azure', execution: 'exec-1' });
    expect(r.state).toBe(state);
    expect(r.detail).toBe(
      `trainer job execution exec-1 of triage-trainer is ${status} (since 2026-11-30T02:10:00.000Z)`,
    );
  });

  it('reads an execution with its times, and nothing for one Resource Manager does not have', async () => {
    arm.executions.set('triage-trainer-abc12', { status: 'Running' });
    const api = containerAppsJobsApi(job, arm.client());
    expect(await api.execution('triage-trainer-abc12')).toEqual({
      name: 'triage-trainer-abc12',
      status: 'Running',
      startTime: '2026-11-30T02:00:00.000Z',
    });
    expect(await api.execution('nope')).toBeUndefined();
    expect(CONTAINER_APPS_API_VERSION).toBe('2025-07-01');
  });

  it('says unknown for an execution it has no name of, or that Resource Manager does not have', async () => {
    expect(await launcher.check('run-1', { kind: 'azure' })).toEqual({
      state: 'unknown',
      detail: 'no job execution was recorded for it',
    });
    expect(arm.requests).toHaveLength(0);
    expect(await launcher.check('run-1', { kind: 'azure', execution: 'gone-1' })).toEqual({
      state: 'unknown',
      detail: 'job triage-trainer has no execution gone-1 (any more)',
    });
  });

  it("throws with Resource Manager's error when the read fails", async () => {
    arm.executions.set('exec-2', { httpStatus: 403, code: 'AuthorizationFailed', message: 'no read on executions' });
    await expect(containerAppsJobsApi(job, arm.client()).execution('exec-2')).rejects.toThrow(
      /GET execution exec-2 of job triage-trainer: HTTP 403 AuthorizationFailed: no read on executions/,
    );
  });
});

describe('local launcher: checking the trainer process', () => {
  const config = loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' });
  const store = BlobStore.fromConnection(config.storage);
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  /** A process standing in for a trainer that another process started (so none of this process's launchers knows it). */
  const orphanTrainer = async (runId: string): Promise<ChildProcess> => {
    const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      env: { ...process.env, RUN_ID: runId },
      stdio: 'ignore',
    });
    children.push(c);
    await new Promise<void>((resolve, reject) => c.once('spawn', resolve).once('error', reject));
    return c;
  };
  const exited = (c: ChildProcess) =>
    new Promise<void>((resolve) =>
      c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
    );

  it('finds a live trainer by its pid on this host, and reports it ended once the process is gone', async () => {
    const c = await orphanTrainer('run-live');
    const l = new LocalLauncher(config, store);
    const launched = { kind: 'local', pid: c.pid!, host: os.hostname() };
    expect(await l.check('run-live', launched)).toEqual({
      state: 'running',
      detail: `the local trainer (pid ${c.pid} on ${os.hostname()}) is running`,
    });
    c.kill('SIGKILL');
    await exited(c);
    expect(await l.check('run-live', launched)).toEqual({
      state: 'ended',
      detail: `the local trainer (pid ${c.pid} on ${os.hostname()}) is no longer running`,
    });
  });

  (fs.existsSync('/proc/self/environ') ? it : it.skip)(
    'does not take a reused pid for the trainer (Linux: the process has no RUN_ID of the run)',
    async () => {
      const c = await orphanTrainer('run-a');
      expect(trainerProcessState(c.pid!, 'run-a')).toBe('running');
      // The same pid for another run: some other process holds it.
      expect(trainerProcessState(c.pid!, 'run-b')).toBe('gone');
      expect(trainerProcessState(process.pid, 'run-a')).toBe('gone');
    },
  );

  it('cannot tell about a process on another host or without a pid', async () => {
    const l = new LocalLauncher(config, store);
    expect(await l.check('r1', { kind: 'local', pid: process.pid, host: 'elsewhere' })).toEqual({
      state: 'unknown',
      detail: `its process (pid ${process.pid}) runs on elsewhere, not on ${os.hostname()}`,
    });
    expect((await l.check('r1', { kind: 'local', pid: process.pid })).state).toBe('unknown');
    expect((await l.check('r1', { kind: 'local' })).state).toBe('unknown');
  });
});
