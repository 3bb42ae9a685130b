import { REQUIRED_IN_AZURE, SETTINGS, STORAGE_SETTING } from '../../../src/config';
import {
  descendants,
  findProperties,
  getPath,
  loadBicep,
  readRepoFile,
  objectEntries,
  params,
  resourcesOfType,
  stringLiteral,
  stringTemplate,
  variable,
} from './bicep';

describe('infra: function app', () => {
  const { root } = loadBicep('modules/functionapp.bicep');
  const settingsNode = variable(root, 'appSettings');
  const settings = settingsNode ? objectEntries(settingsNode) : new Map<string, never>();
  const [site] = resourcesOfType(root, 'Microsoft.Web/sites');
  const [plan] = resourcesOfType(root, 'Microsoft.Web/serverfarms');

  it('applies the appSettings variable as the app settings of the site', () => {
    const [config] = resourcesOfType(root, 'Microsoft.Web/sites/config').concat(
      // nested `resource settings 'config'` has the short type 'config'
      resourcesOfType(root, 'config'),
    );
    expect(config).toBeDefined();
    expect(stringLiteral(getPath(config!.body, ['name']))).toBe('appsettings');
    expect(getPath(config!.body, ['properties'])?.text).toBe('appSettings');
  });

  it.each(REQUIRED_IN_AZURE)('sets %s, which src/config.ts requires in Azure', (key) => {
    expect(settings.has(key)).toBe(true);
  });

  it('sets every TRIAGE_* setting the function reads (not the local-runtime ones) from a parameter', () => {
    const paramNames = new Set(params(root).map((p) => p.name));
    const keys = SETTINGS.map((s) => s.key).filter((k) => k.startsWith('TRIAGE_') && !k.startsWith('TRIAGE_LOCAL_'));
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const value = settings.get(key);
      expect(value).toBeDefined();
      // `param` or `string(param)`
      const ref = value!.text.replace(/^string\((\w+)\)$/, '$1');
      expect(paramNames.has(ref)).toBe(true);
    }
  });

  it('connects to storage with the managed identity only', () => {
    expect(stringLiteral(settings.get(`${STORAGE_SETTING}__credential`))).toBe('managedidentity');
    expect(settings.get(`${STORAGE_SETTING}__clientId`)?.text).toBe('identityClientId');
    expect(settings.get(`${STORAGE_SETTING}__blobServiceUri`)?.text).toBe('storageBlobEndpoint');
    expect(settings.get(`${STORAGE_SETTING}__queueServiceUri`)?.text).toBe('storageQueueEndpoint');
    // No connection string and no account key anywhere in the settings.
    expect(settings.has(STORAGE_SETTING)).toBe(false);
    expect(settingsNode!.text).not.toMatch(/AccountKey|listKeys|SharedAccessSignature/);
  });

  it('authenticates to Application Insights with Entra ID', () => {
    expect(stringTemplate(settings.get('APPLICATIONINSIGHTS_AUTHENTICATION_STRING'))).toBe(
      'ClientId=${identityClientId};Authorization=AAD',
    );
    expect(settings.has('APPLICATIONINSIGHTS_CONNECTION_STRING')).toBe(true);
  });

  it('carries the settings the retrain function needs to start the trainer job', () => {
    // Every key the launcher reads (src/config.ts, when TRAINER_JOB_NAME is set) is set here.
    const launcherKeys = SETTINGS.map((s) => s.key).filter((k) => k.startsWith('TRAINER_') || k.startsWith('AZURE_'));
    expect(launcherKeys.length).toBeGreaterThanOrEqual(7);
    for (const key of launcherKeys) expect(settings.has(key)).toBe(true);
  });

  it('does not set FUNCTIONS_WORKER_RUNTIME, which Flex Consumption rejects (runtime is in functionAppConfig)', () => {
    expect(settings.has('FUNCTIONS_WORKER_RUNTIME')).toBe(false);
    expect(settings.has('FUNCTIONS_EXTENSION_VERSION')).toBe(false);
  });

  it('runs on a Flex Consumption plan', () => {
    expect(plan).toBeDefined();
    expect(stringLiteral(getPath(plan!.body, ['sku', 'tier']))).toBe('FlexConsumption');
    expect(stringLiteral(getPath(plan!.body, ['sku', 'name']))).toBe('FC1');
  });

  it('sets nothing in siteConfig that Flex Consumption rejects (ftpsState: ARM 400, code 51021)', () => {
    const siteConfig = getPath(site!.body, ['properties', 'siteConfig']);
    expect(siteConfig).toBeDefined();
    expect(findProperties(site!.body, 'ftpsState')).toEqual([]);
    expect(stringLiteral(getPath(siteConfig!, ['minTlsVersion']))).toBe('1.2');
    // Not in any other form either (a variable spread into siteConfig, another site resource).
    expect(loadBicep('modules/functionapp.bicep').text).not.toMatch(/^\s*ftpsState\s*:/m);
  });

  it('turns basic (user name and password) publishing credentials off for FTP and SCM', () => {
    const policies = resourcesOfType(root, 'basicPublishingCredentialsPolicies').concat(
      resourcesOfType(root, 'Microsoft.Web/sites/basicPublishingCredentialsPolicies'),
    );
    const byName = new Map(
      policies.map((p) => [stringLiteral(getPath(p.body, ['name'])), getPath(p.body, ['properties', 'allow'])?.text]),
    );
    expect(Object.fromEntries(byName)).toEqual({ ftp: 'false', scm: 'false' });
    // Both belong to the site (nested in it), unconditionally.
    for (const p of policies) {
      expect(descendants(site!.node)).toContain(p.node);
      expect(p.node.text).not.toMatch(/=\s*if\s*\(/);
    }
  });

  it('is a Node 22 Flex app deploying from blob storage with its user-assigned identity', () => {
    expect(site).toBeDefined();
    const cfg = getPath(site!.body, ['properties', 'functionAppConfig'])!;
    expect(stringLiteral(getPath(cfg, ['runtime', 'name']))).toBe('node');
    expect(stringLiteral(getPath(cfg, ['runtime', 'version']))).toBe('22');
    expect(stringLiteral(getPath(cfg, ['deployment', 'storage', 'type']))).toBe('blobContainer');
    expect(stringLiteral(getPath(cfg, ['deployment', 'storage', 'authentication', 'type']))).toBe(
      'UserAssignedIdentity',
    );
    expect(getPath(cfg, ['deployment', 'storage', 'authentication', 'userAssignedIdentityResourceId'])?.text).toBe(
      'identityId',
    );
    expect(stringLiteral(getPath(site!.body, ['identity', 'type']))).toBe('UserAssigned');
    expect(getPath(site!.body, ['properties', 'httpsOnly'])?.text).toBe('true');
  });

  it('builds for the Node the app runs on: @types/node 22, engines admitting 22 (and 20, for local machines)', () => {
    const pkg = JSON.parse(readRepoFile('package.json')) as {
      engines: { node: string };
      devDependencies: Record<string, string>;
    };
    expect(pkg.devDependencies['@types/node']).toMatch(/^\^22\./);
    const min = /^>=\s*(\d+)(\.\d+){0,2}$/.exec(pkg.engines.node.trim());
    expect(min).not.toBeNull();
    expect(Number(min![1])).toBeLessThanOrEqual(20);
  });

  it('is tagged for azd service `api`', () => {
    expect(getPath(site!.body, ['tags'])?.text).toContain("'azd-service-name': 'api'");
  });
});

describe('infra: main.bicep wires the function app', () => {
  const { root } = loadBicep('main.bicep');

  it('passes every parameter of the function app module that has no default', () => {
    const fn = loadBicep('modules/functionapp.bicep');
    const required = params(fn.root)
      .filter((p) => p.defaultValue === undefined)
      .map((p) => p.name);
    const mod = root.namedChildren.find(
      (n) => n.type === 'module_declaration' && n.text.includes("'modules/functionapp.bicep'"),
    );
    expect(mod).toBeDefined();
    const body = mod!.namedChildren.find((n) => n.type === 'object')!;
    const passed = objectEntries(getPath(body, ['params'])!);
    for (const name of required) expect(passed.has(name)).toBe(true);
  });
});
