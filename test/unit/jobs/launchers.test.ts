import path from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config';
import {
  AzureJobLauncher,
  ExecutionTemplate,
  JobsApi,
  TRAINER_ENV_KEYS,
  azureTrainerEnv,
  buildExecutionTemplate,
  launcherFor,
  localTrainerEnv,
  trainerCommand,
  LocalLauncher,
} from '../../../src/jobs/launchers';
import { BlobStore } from '../../../src/storage/blobStore';
import { arrayItems, getPath, loadBicep, objectEntries, resourcesOfType, stringLiteral } from '../infra/bicep';

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
    expect(() => loadConfig(noImage)).toThrow(/TRAINER_IMAGE is missing; expected .*required when TRAINER_JOB_NAME is set/);
    expect(() => loadConfig({ ...azureSettings, TRAINER_CPU: 'lots' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...azureSettings, TRAINER_MEMORY: '56 GB' })).toThrow(/TRAINER_MEMORY/);
    expect(() => loadConfig({ ...azureSettings, TRAINER_CLIENT_ID: 'trainer' })).toThrow(/TRAINER_CLIENT_ID has the value "trainer"/);
  });

  it('builds an execution template with the image, the resources and every env var the trainer reads', () => {
    const t = buildExecutionTemplate(config, job, 'run-42');
    expect(t.containers).toHaveLength(1);
    const [c] = t.containers;
    expect(c).toMatchObject({ name: 'trainer', image: 'acr.azurecr.io/image-triage-trainer:latest', resources: { cpu: 8, memory: '56Gi' } });
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
    expect(trainerConfig.storage).toEqual({ kind: 'identity', blobServiceUri: 'https://acct.blob.core.windows.net', clientId: TRAINER_ID });
    expect(trainerConfig.backend).toBe('tensorflow');
    expect(trainerConfig.profile).toBe('xray');
  });

  it('sets every variable the job\'s own template in infra/modules/trainer.bicep sets (a start replaces it whole)', () => {
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
    expect(() => azureTrainerEnv(cs, cs.trainerJob!, 'r1')).toThrow(/managed identity.*AzureWebJobsStorage__blobServiceUri/);
  });

  it('starts the job with beginStart(resourceGroup, jobName, { template }) and reports the execution', async () => {
    const calls: { rg: string; job: string; template: ExecutionTemplate }[] = [];
    const api: JobsApi = {
      beginStart: async (rg, jobName, opts) => {
        calls.push({ rg, job: jobName, template: opts.template });
        return { pollUntilDone: async () => ({ name: 'triage-trainer-abc12', id: '/subscriptions/x/executions/triage-trainer-abc12' }) };
      },
    };
    const l = new AzureJobLauncher(config, job, { api });
    expect(await l.launch('run-7')).toEqual({ kind: 'azure', execution: 'triage-trainer-abc12' });
    expect(calls).toEqual([{ rg: 'rg-triage', job: 'triage-trainer', template: buildExecutionTemplate(config, job, 'run-7') }]);

    const failing = new AzureJobLauncher(config, job, { api: { beginStart: async () => Promise.reject(new Error('AuthorizationFailed')) } });
    await expect(failing.launch('run-8')).rejects.toThrow(/could not start an execution of job triage-trainer in resource group rg-triage: AuthorizationFailed/);
  });

  it('is chosen when a trainer job is configured, else the local launcher', () => {
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: 'UseDevelopmentStorage=true' });
    expect(launcherFor(config, store).kind).toBe('azure');
    expect(launcherFor(loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' }), store)).toBeInstanceOf(LocalLauncher);
  });
});

describe('local launcher', () => {
  it('gives the child this process\'s storage connection and settings, plus RUN_ID', () => {
    const c = loadConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true', TRIAGE_BACKEND: 'cpu' });
    expect(localTrainerEnv(c, 'r9')).toEqual({ AzureWebJobsStorage: 'UseDevelopmentStorage=true', TRIAGE_BACKEND: 'cpu', TRIAGE_PROFILE: 'mnist', TRIAGE_XRAY_SIZE: '224', RUN_ID: 'r9' });
  });

  it('runs the compiled CLI from dist/, or the TypeScript CLI through a transpile hook from the sources', () => {
    const js = trainerCommand('r1', '/app/dist/src/jobs/launchers.js');
    expect(js.args).toEqual([path.join('/app/dist/src/cli/main.js'), 'train-job', '--run', 'r1']);
    expect(js.command).toBe(process.execPath);
    const ts = trainerCommand('r1', path.join(__dirname, '../../../src/jobs/launchers.ts'));
    expect(ts.args[0]).toBe('-e');
    expect(ts.env.TRIAGE_TS_MAIN).toBe(path.resolve(__dirname, '../../../src/cli/main.ts'));
    expect(JSON.parse(ts.env.TRIAGE_TS_ARGS ?? '[]')).toEqual(['train-job', '--run', 'r1']);
  });
});
