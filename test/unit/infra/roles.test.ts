import { allBicepFiles, getPath, loadBicep, objectEntries, params, resourcesOfType, stringLiteral, variable } from './bicep';

/**
 * Azure built-in role definition ids, as listed in Microsoft's "Azure built-in roles" reference
 * (learn.microsoft.com/azure/role-based-access-control/built-in-roles), checked when written.
 */
const BUILT_IN_ROLES: Record<string, string> = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb',
  'Container Apps Jobs Operator': 'b9a307c4-5aa3-4b52-ba60-2b17c136cd7b',
  AcrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d',
};
const KNOWN_IDS = new Set(Object.values(BUILT_IN_ROLES));
const GUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

describe('infra: role assignments', () => {
  const { root } = loadBicep('modules/roles.bicep');
  const roleIds = objectEntries(variable(root, 'roles')!);
  const roleIdByKey = new Map([...roleIds].map(([k, v]) => [k, stringLiteral(v)!]));
  const assignments = resourcesOfType(root, 'Microsoft.Authorization/roleAssignments').map((r) => {
    const props = getPath(r.body, ['properties'])!;
    const roleRef = /roles\.(\w+)/.exec(getPath(props, ['roleDefinitionId'])!.text)![1]!;
    return {
      symbol: r.symbol,
      scope: getPath(r.body, ['scope'])!.text,
      principal: getPath(props, ['principalId'])!.text,
      roleId: roleIdByKey.get(roleRef),
      nameText: getPath(r.body, ['name'])!.text,
    };
  });

  it('uses only documented built-in role definition ids, each commented with its name', () => {
    for (const [key, idNode] of roleIds) {
      const id = stringLiteral(idNode)!;
      const name = Object.keys(BUILT_IN_ROLES).find((n) => BUILT_IN_ROLES[n] === id);
      expect({ key, id, known: name !== undefined }).toEqual({ key, id, known: true });
      // the comment after the id names the role
      const line = idNode.parent!.text;
      const after = loadBicep('modules/roles.bicep').text.split('\n').find((l) => l.includes(id))!;
      expect(line).toContain(id);
      expect(after).toContain(`// ${name}`);
    }
  });

  it('has no other GUID in any Bicep file (no stray or mistyped role id)', () => {
    for (const rel of allBicepFiles()) {
      const guids = loadBicep(rel).text.match(GUID) ?? [];
      for (const g of guids) expect({ rel, g, known: KNOWN_IDS.has(g.toLowerCase()) }).toEqual({ rel, g, known: true });
    }
  });

  const expectAssignment = (role: string, principal: string, scope: string): void => {
    const hit = assignments.find((a) => a.roleId === BUILT_IN_ROLES[role] && a.principal === principal && a.scope === scope);
    expect({ role, principal, scope, found: hit !== undefined }).toEqual({ role, principal, scope, found: true });
  };

  it('gives the function identity blob, queue and metrics roles', () => {
    expectAssignment('Storage Blob Data Owner', 'functionPrincipalId', 'storage');
    expectAssignment('Storage Queue Data Contributor', 'functionPrincipalId', 'storage');
    expectAssignment('Monitoring Metrics Publisher', 'functionPrincipalId', 'appInsights');
  });

  it('lets the function identity operate the trainer job, on the job only', () => {
    expectAssignment('Container Apps Jobs Operator', 'functionPrincipalId', 'trainerJob');
  });

  it('gives the trainer identity blob access (its AcrPull is in trainer.bicep, before the job)', () => {
    expectAssignment('Storage Blob Data Contributor', 'trainerPrincipalId', 'storage');
    expect(assignments.filter((a) => a.roleId === BUILT_IN_ROLES.AcrPull)).toEqual([]);
  });

  it('lets the Event Grid system topic write to the dead-letter container only', () => {
    expectAssignment('Storage Blob Data Contributor', 'eventGridPrincipalId', 'deadLetterContainer');
    const [container] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices/containers');
    expect(container?.existing).toBe(true);
    expect(container?.symbol).toBe('deadLetterContainer');
    expect(getPath(container!.body, ['name'])?.text).toBe('deadLetterContainerName');
    const [blobService] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices');
    expect(getPath(container!.body, ['parent'])?.text).toBe(blobService!.symbol);
    expect(getPath(blobService!.body, ['parent'])?.text).toBe('storage');
    // No other role for that identity.
    expect(assignments.filter((a) => a.principal === 'eventGridPrincipalId')).toHaveLength(1);
    expect(params(root).map((p) => p.name)).toEqual(expect.arrayContaining(['eventGridPrincipalId', 'deadLetterContainerName']));
  });

  it('names every assignment deterministically from scope, principal and role', () => {
    for (const a of assignments) expect(a.nameText).toMatch(/^guid\(\w+\.id, \w+, roles\.\w+\)$/);
  });

  it('is wired from main.bicep with both identities', () => {
    const main = loadBicep('main.bicep').text;
    expect(main).toMatch(/functionPrincipalId: functionIdentity\.outputs\.principalId/);
    expect(main).toMatch(/trainerPrincipalId: trainerIdentity\.outputs\.principalId/);
    // ...and the system topic's identity with the container it dead-letters to, both from the storage module.
    expect(main).toMatch(/eventGridPrincipalId: storage\.outputs\.systemTopicPrincipalId/);
    expect(main).toMatch(/deadLetterContainerName: storage\.outputs\.deadLetterContainerName/);
  });
});
