import { getPath, loadBicep, objectEntries, params, readRepoFile, stringLiteral, variable } from './bicep';

/**
 * Where Container Apps offers serverless GPU profiles (Microsoft's "Using serverless GPUs in Azure
 * Container Apps" page): T4 and A100 in West US 3, Australia East and Sweden Central; A100 only in
 * West US; T4 only in West Europe. Each of these regions offers Flex Consumption too
 * (`az functionapp list-flexconsumption-locations`).
 */
const T4 = 'Consumption-GPU-NC8as-T4';
const A100 = 'Consumption-GPU-NC24-A100';
const GPU_REGIONS: Record<string, string[]> = {
  westus3: [T4, A100],
  australiaeast: [T4, A100],
  swedencentral: [T4, A100],
  westus: [A100],
  westeurope: [T4],
};

describe('infra: regions where both Flex Consumption and serverless GPUs exist', () => {
  const { root } = loadBicep('main.bicep');
  const location = params(root).find((p) => p.name === 'location')!;
  const allowed = [...location.decorators.join('\n').matchAll(/^\s*'([a-z0-9]+)'\s*$/gm)].map((m) => m[1]!);
  const byRegion = objectEntries(variable(root, 'gpuProfilesByRegion')!);

  it('allows only the regions with a serverless GPU profile', () => {
    expect(location.decorators.join('\n')).toContain('@allowed([');
    expect([...allowed].sort()).toEqual(Object.keys(GPU_REGIONS).sort());
    expect([...byRegion.keys()].sort()).toEqual(Object.keys(GPU_REGIONS).sort());
  });

  it('knows which profiles each region has, and maps each profile to itself', () => {
    for (const [region, profiles] of byRegion) {
      const entries = objectEntries(profiles);
      expect({ region, profiles: [...entries.keys()].sort() }).toEqual({
        region,
        profiles: [...GPU_REGIONS[region]!].sort(),
      });
      for (const [key, value] of entries) expect(stringLiteral(value)).toBe(key);
    }
  });

  it('gives the trainer the profile looked up in the region (a missing one fails the deployment)', () => {
    expect(variable(root, 'gpuProfileInRegion')?.text).toBe('gpuProfilesByRegion[location][gpuProfileType]');
    const mod = root.namedChildren.find(
      (n) => n.type === 'module_declaration' && n.text.includes("'modules/trainer.bicep'"),
    )!;
    const passed = objectEntries(
      getPath(
        mod.namedChildren.find((n) => n.type === 'object')!,
        ['params'],
      )!,
    );
    expect(passed.get('gpuProfileType')?.text).toBe('gpuProfileInRegion');
    // Nothing else reads the unchecked parameter.
    const uses = loadBicep('main.bicep')
      .text.split('\n')
      .map((l) => l.replace(/^\s*gpuProfileType:/, '')) // a module's parameter of that name
      .filter((l) => /\bgpuProfileType\b/.test(l) && !/^\s*(param|@|\/\/)/.test(l));
    expect(uses).toEqual(['var gpuProfileInRegion = gpuProfilesByRegion[location][gpuProfileType]']);
  });

  it('names the regions and both quota names in infra/README.md', () => {
    const readme = readRepoFile('infra/README.md');
    for (const region of Object.keys(GPU_REGIONS)) expect(readme).toContain(`\`${region}\``);
    expect(readme).toContain('Managed Environment Consumption T4 Gpus');
    expect(readme).toContain('Managed Environment Consumption NCA100 Gpus');
  });
});
