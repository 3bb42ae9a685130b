import * as fs from 'fs';
import * as path from 'path';
import { allBicepFiles, INFRA, loadBicep, outputs, params, syntaxErrors } from './bicep';

describe('infra: every Bicep file parses', () => {
  const files = allBicepFiles();

  it('has the entry points and modules azd and the post-deploy hook use', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'main.bicep',
        'eventgrid.bicep',
        path.join('modules', 'storage.bicep'),
        path.join('modules', 'functionapp.bicep'),
        path.join('modules', 'monitoring.bicep'),
        path.join('modules', 'trainer.bicep'),
        path.join('modules', 'roles.bicep'),
        path.join('modules', 'identity.bicep'),
      ]),
    );
  });

  it.each(allBicepFiles())('%s has no syntax error', (rel) => {
    const { root } = loadBicep(rel);
    expect(syntaxErrors(root)).toEqual([]);
    expect(root.hasError).toBe(false);
  });

  it('every module main.bicep references exists', () => {
    const { text } = loadBicep('main.bicep');
    const refs = [...text.matchAll(/^module\s+\w+\s+'([^']+)'/gm)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect(fs.existsSync(path.join(INFRA, ref))).toBe(true);
  });
});

describe('infra: main.bicep parameters and outputs', () => {
  const { root } = loadBicep('main.bicep');
  const ps = params(root);

  it('gives every parameter a default except the two azd always supplies', () => {
    const withoutDefault = ps.filter((p) => p.defaultValue === undefined).map((p) => p.name);
    expect(withoutDefault.sort()).toEqual(['environmentName', 'location']);
  });

  it('names its outputs in UPPER_SNAKE case for azd, including the ones the hook reads', () => {
    const names = outputs(root).map((o) => o.name);
    for (const n of names) expect(n).toMatch(/^[A-Z][A-Z0-9_]*$/);
    expect(names).toEqual(
      expect.arrayContaining([
        'AZURE_RESOURCE_GROUP',
        'AZURE_SUBSCRIPTION_ID',
        'AZURE_STORAGE_BLOB_ENDPOINT',
        'AZURE_STORAGE_ACCOUNT_NAME',
        'FUNCTION_APP_NAME',
        'EVENTGRID_SYSTEM_TOPIC_NAME',
        'TRAINER_JOB_NAME',
        'TRAINER_IMAGE',
        'AZURE_CONTAINER_REGISTRY_NAME',
      ]),
    );
  });

  it('main.parameters.json sets only parameters main.bicep declares', () => {
    const json = JSON.parse(fs.readFileSync(path.join(INFRA, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, unknown>;
    };
    const declared = new Set(ps.map((p) => p.name));
    for (const name of Object.keys(json.parameters)) expect(declared.has(name)).toBe(true);
    expect(json.parameters).toHaveProperty('environmentName');
    expect(json.parameters).toHaveProperty('location');
  });
});
