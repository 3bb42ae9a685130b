import { ALL_CONTAINERS, CONTAINERS, HOST_CONTAINER } from '../../../src/storage/layout';
import {
  allBicepFiles,
  arrayItems,
  descendants,
  getPath,
  loadBicep,
  Node,
  objectEntries,
  params,
  resourcesOfType,
  stringLiteral,
  variable,
} from './bicep';

/**
 * Azure built-in role definition ids, as listed in Microsoft's "Azure built-in roles" reference
 * (learn.microsoft.com/azure/role-based-access-control/built-in-roles), checked when written.
 */
const BUILT_IN_ROLES: Record<string, string> = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  'Storage Blob Data Reader': '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb',
  'Container Apps Jobs Operator': 'b9a307c4-5aa3-4b52-ba60-2b17c136cd7b',
  AcrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d',
};
const KNOWN_IDS = new Set(Object.values(BUILT_IN_ROLES));
const GUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

const CONTAINER_TYPE = 'Microsoft.Storage/storageAccounts/blobServices/containers';
const ACCOUNT_TYPE = 'Microsoft.Storage/storageAccounts';
/** Scopes that are not storage at all: one resource each, never a resource group or subscription. */
const NON_STORAGE_SCOPES = new Set([
  'Microsoft.Insights/components',
  'Microsoft.App/jobs',
  'Microsoft.ContainerRegistry/registries',
]);
/**
 * The only role assignments allowed on the whole storage account, with why (the Bicep says the same
 * next to each). Never a blob role, never Owner.
 */
const ACCOUNT_SCOPE_EXCEPTIONS: Record<string, { role: string; why: RegExp }> = {
  // Queues: the Functions host names and creates its queues at run time; a queue-scoped assignment
  // cannot allow creating one, and the pipeline keeps no data in queues.
  'modules/roles.bicep#functionQueueContributor': {
    role: 'Storage Queue Data Contributor',
    why: /creates? its queues at run time/,
  },
};

/** `roles.x` of roles.bicep, or a role id variable of the file (acrPullRoleId), as a role id. */
function roleIdOf(expr: string, root: Node): string | undefined {
  const key = /\broles\.(\w+)/.exec(expr)?.[1];
  if (key !== undefined)
    return stringLiteral(objectEntries(variable(loadBicep('modules/roles.bicep').root, 'roles')!).get(key));
  const v = /\b(\w+RoleId)\b/.exec(expr)?.[1];
  return v !== undefined ? stringLiteral(variable(root, v)) : undefined;
}

/** The comment lines just above a declaration. */
function commentAbove(text: string, node: Node): string {
  const lines = text.split('\n');
  const out: string[] = [];
  for (let i = node.startPosition.row - 1; i >= 0 && /^\s*\/\//.test(lines[i]!); i--) out.unshift(lines[i]!);
  return out.join('\n');
}

/** Uses of a module file (relative to infra/) in every Bicep file: the `params` object of each. */
function moduleUses(rel: string): { id: string; params: Map<string, Node>; root: Node }[] {
  const base = rel.split('/').pop()!;
  return allBicepFiles().flatMap((from) => {
    const { root } = loadBicep(from);
    return root.namedChildren
      .filter(
        (n) => n.type === 'module_declaration' && new RegExp(`'(modules/)?${base.replace('.', '\\.')}'`).test(n.text),
      )
      .map((m) => ({
        id: `${from}#${m.namedChild(0)!.text}`,
        params: objectEntries(
          getPath(
            descendants(m).find((d) => d.type === 'object')!,
            ['params'],
          )!,
        ),
        root,
      }));
  });
}

/**
 * Every role assignment resource of every Bicep file, with the type of the resource it is scoped to.
 * An assignment whose role is a parameter of its module is listed once per use of the module, with
 * the role that use passes.
 */
const ALL_ASSIGNMENTS = allBicepFiles().flatMap((rel) => {
  const { root, text } = loadBicep(rel);
  const typeOf = new Map(
    descendants(root)
      .filter((n) => n.type === 'resource_declaration')
      .map((n) => {
        const typeString = stringLiteral(n.namedChildren.find((c) => c.type === 'string')) ?? '';
        return [n.namedChild(0)!.text, typeString.split('@')[0]!] as const;
      }),
  );
  const paramNames = new Set(params(root).map((p) => p.name));
  return resourcesOfType(root, 'Microsoft.Authorization/roleAssignments').flatMap((r) => {
    const scope = getPath(r.body, ['scope'])?.text;
    const roleExpr = getPath(r.body, ['properties', 'roleDefinitionId'])?.text ?? '';
    const base = {
      scope,
      scopeType: scope === undefined ? undefined : typeOf.get(scope.replace(/\[\w+\]$/, '')),
      roleExpr,
      comment: commentAbove(text, r.node),
    };
    const roleParam = /roleDefinitions', (\w+)\)$/.exec(roleExpr)?.[1];
    if (roleParam !== undefined && paramNames.has(roleParam)) {
      return moduleUses(rel).map((use) => ({
        ...base,
        id: `${rel}#${r.symbol} (${use.id})`,
        roleId: roleIdOf(use.params.get(roleParam)?.text ?? '', use.root),
      }));
    }
    return [{ ...base, id: `${rel}#${r.symbol}`, roleId: roleIdOf(roleExpr, root) }];
  });
});

describe('infra: role assignments', () => {
  const { root } = loadBicep('modules/roles.bicep');
  const roleIds = objectEntries(variable(root, 'roles')!);
  const roleKeyById = new Map([...roleIds].map(([k, v]) => [stringLiteral(v)!, k]));
  const roleName = (id: string | undefined) => Object.keys(BUILT_IN_ROLES).find((n) => BUILT_IN_ROLES[n] === id);
  const assignments = resourcesOfType(root, 'Microsoft.Authorization/roleAssignments').map((r) => {
    const props = getPath(r.body, ['properties'])!;
    return {
      symbol: r.symbol,
      scope: getPath(r.body, ['scope'])!.text,
      principal: getPath(props, ['principalId'])!.text,
      roleId: roleIdOf(getPath(props, ['roleDefinitionId'])!.text, root),
      nameText: getPath(r.body, ['name'])!.text,
    };
  });

  /** A list of container names a module is given: an array literal, a variable, or a parameter (by name). */
  const containerList = (n: Node | undefined): string[] => {
    if (n === undefined) return [];
    if (n.type === 'array') return arrayItems(n).map((i) => stringLiteral(i) ?? `param:${i.text}`);
    const v = variable(root, n.text);
    return v !== undefined ? containerList(v) : [`param:${n.text}`];
  };
  /** Each use of modules/containerRoles.bicep: who gets which role on which containers. */
  const containerGrants = root.namedChildren
    .filter((n) => n.type === 'module_declaration' && n.text.includes("'containerRoles.bicep'"))
    .map((m) => {
      const body = descendants(m).find((d) => d.type === 'object')!;
      const p = objectEntries(getPath(body, ['params'])!);
      return {
        symbol: m.namedChild(0)!.text,
        principal: p.get('principalId')!.text,
        role: roleName(roleIdOf(p.get('roleId')!.text, root)),
        containers: containerList(p.get('containerNames')),
        conditional: /=\s*if\s*\(/.test(m.text),
      };
    });
  const grantsOf = (principal: string, role: string) =>
    containerGrants
      .filter((g) => g.principal === principal && g.role === role)
      .flatMap((g) => g.containers)
      .sort();

  it('uses only documented built-in role definition ids, each commented with its name', () => {
    for (const [key, idNode] of roleIds) {
      const id = stringLiteral(idNode)!;
      const name = roleName(id);
      expect({ key, id, known: name !== undefined }).toEqual({ key, id, known: true });
      // the comment after the id names the role
      const line = loadBicep('modules/roles.bicep')
        .text.split('\n')
        .find((l) => l.includes(id))!;
      expect(line).toContain(`// ${name}`);
    }
  });

  it('has no other GUID in any Bicep file (no stray or mistyped role id, no Owner or Contributor)', () => {
    for (const rel of allBicepFiles()) {
      const guids = loadBicep(rel).text.match(GUID) ?? [];
      for (const g of guids) expect({ rel, g, known: KNOWN_IDS.has(g.toLowerCase()) }).toEqual({ rel, g, known: true });
    }
  });

  it('finds the role assignments of every file, and knows the role of each', () => {
    expect(ALL_ASSIGNMENTS.length).toBeGreaterThanOrEqual(5);
    for (const a of ALL_ASSIGNMENTS)
      expect({ id: a.id, role: roleName(a.roleId) ?? a.roleExpr }).toEqual({
        id: a.id,
        role: expect.any(String) as string,
      });
    for (const a of ALL_ASSIGNMENTS)
      expect({ id: a.id, known: KNOWN_IDS.has(a.roleId ?? '') }).toEqual({ id: a.id, known: true });
  });

  it('scopes every storage role assignment to a container, but for the listed exceptions, which say why', () => {
    for (const a of ALL_ASSIGNMENTS) {
      // No scope means the resource group: never.
      expect({ id: a.id, scope: a.scope }).toEqual({ id: a.id, scope: expect.any(String) as string });
      const kind =
        a.scopeType === CONTAINER_TYPE
          ? 'container'
          : a.scopeType === ACCOUNT_TYPE
            ? 'account'
            : NON_STORAGE_SCOPES.has(a.scopeType ?? '')
              ? 'other resource'
              : `unexpected: ${a.scopeType}`;
      if (kind === 'account') {
        const exception = ACCOUNT_SCOPE_EXCEPTIONS[a.id];
        expect({ id: a.id, listedException: exception !== undefined }).toEqual({ id: a.id, listedException: true });
        expect({ id: a.id, role: roleName(a.roleId) }).toEqual({ id: a.id, role: exception!.role });
        expect(a.comment).toMatch(/Account scope:/);
        expect(a.comment).toMatch(exception!.why);
      } else {
        expect({ id: a.id, kind }).toEqual({
          id: a.id,
          kind: expect.stringMatching(/^(container|other resource)$/) as string,
        });
      }
      // A blob data role is never given on anything but a container.
      if (/^Storage Blob Data /.test(roleName(a.roleId) ?? ''))
        expect({ id: a.id, kind }).toEqual({ id: a.id, kind: 'container' });
    }
    // Every exception is still there (a stale entry would hide nothing, but says something false).
    for (const id of Object.keys(ACCOUNT_SCOPE_EXCEPTIONS)) expect(ALL_ASSIGNMENTS.map((a) => a.id)).toContain(id);
  });

  it('forbids account-wide Owner: Storage Blob Data Owner only on the Functions host containers', () => {
    const owners = ALL_ASSIGNMENTS.filter((a) => a.roleId === BUILT_IN_ROLES['Storage Blob Data Owner']);
    expect(owners.map((a) => a.id)).toEqual([
      'modules/containerRoles.bicep#assignments (modules/roles.bicep#functionHostBlobOwner)',
    ]);
    expect(owners[0]!.scopeType).toBe(CONTAINER_TYPE);
    expect(assignments.filter((a) => a.roleId === BUILT_IN_ROLES['Storage Blob Data Owner'])).toEqual([]);
    const ownerGrants = containerGrants.filter((g) => g.role === 'Storage Blob Data Owner');
    expect(ownerGrants.map((g) => [g.principal, g.containers])).toEqual([
      ['functionPrincipalId', ['param:hostContainerNames']],
    ]);
  });

  it('gives the Functions host Owner on its own containers, which storage.bicep creates (HOST_CONTAINER among them)', () => {
    const storage = loadBicep('modules/storage.bicep').root;
    const hostContainers = arrayItems(variable(storage, 'hostContainers')).map((n) => stringLiteral(n));
    expect(hostContainers).toEqual(expect.arrayContaining([HOST_CONTAINER, 'azure-webjobs-secrets']));
    expect(hostContainers.filter((c) => (ALL_CONTAINERS as readonly (string | undefined)[]).includes(c))).toEqual([]);
    const created = resourcesOfType(storage, CONTAINER_TYPE).filter((c) =>
      c.node.text.includes('for containerName in hostContainers'),
    );
    expect(created).toHaveLength(1);
    expect(loadBicep('main.bicep').text).toMatch(/hostContainerNames: storage\.outputs\.hostContainerNames/);
    expect(loadBicep('modules/storage.bicep').text).toMatch(/^output hostContainerNames array = hostContainers$/m);
  });

  it('gives the function identity read or write on each pipeline container, by what it does, and nothing account-wide but queues', () => {
    const reads = grantsOf('functionPrincipalId', 'Storage Blob Data Reader');
    const writes = grantsOf('functionPrincipalId', 'Storage Blob Data Contributor').filter(
      (c) => c !== 'param:deploymentContainerName',
    );
    expect(reads).toEqual([CONTAINERS.deadLetter, CONTAINERS.models, CONTAINERS.uploads].sort());
    expect(writes).toEqual(
      [
        CONTAINERS.flagged,
        CONTAINERS.labels,
        CONTAINERS.predictions,
        CONTAINERS.preprocessed,
        CONTAINERS.rejected,
        CONTAINERS.runs,
      ].sort(),
    );
    // Every container of the layout, each once: a new container fails here until someone decides.
    expect([...reads, ...writes].sort()).toEqual([...ALL_CONTAINERS].sort());
    // The deployment package: read and write, on that container only.
    expect(grantsOf('functionPrincipalId', 'Storage Blob Data Contributor')).toContain('param:deploymentContainerName');
    expect(loadBicep('main.bicep').text).toMatch(/deploymentContainerName: storage\.outputs\.deploymentContainerName/);
    const direct = assignments
      .filter((a) => a.principal === 'functionPrincipalId')
      .map((a) => [roleName(a.roleId), a.scope]);
    expect(direct.sort()).toEqual(
      [
        ['Storage Queue Data Contributor', 'storage'],
        ['Monitoring Metrics Publisher', 'appInsights'],
        ['Container Apps Jobs Operator', 'trainerJob'],
      ].sort(),
    );
  });

  it('gives the trainer read on labels and preprocessed images and write on models and runs, nothing else', () => {
    expect(grantsOf('trainerPrincipalId', 'Storage Blob Data Reader')).toEqual(
      [CONTAINERS.labels, CONTAINERS.preprocessed].sort(),
    );
    expect(grantsOf('trainerPrincipalId', 'Storage Blob Data Contributor')).toEqual(
      [CONTAINERS.models, CONTAINERS.runs].sort(),
    );
    expect(containerGrants.filter((g) => g.principal === 'trainerPrincipalId')).toHaveLength(2);
    expect(assignments.filter((a) => a.principal === 'trainerPrincipalId')).toEqual([]);
    // Its AcrPull is in trainer.bicep, before the job.
    expect(assignments.filter((a) => a.roleId === BUILT_IN_ROLES.AcrPull)).toEqual([]);
  });

  it('gives the optional operator write on the pipeline containers only (not the host keys, not the package)', () => {
    const op = containerGrants.filter((g) => g.principal === 'operatorPrincipalId');
    expect(op.map((g) => [g.role, g.containers, g.conditional])).toEqual([
      ['Storage Blob Data Contributor', ['param:pipelineContainerNames'], true],
    ]);
    expect(loadBicep('main.bicep').text).toMatch(/pipelineContainerNames: storage\.outputs\.containerNames/);
    expect(assignments.filter((a) => a.principal === 'operatorPrincipalId')).toEqual([]);
  });

  it('lets the Event Grid system topic write to the dead-letter container only', () => {
    const hit = assignments.find((a) => a.principal === 'eventGridPrincipalId');
    expect(hit && [roleName(hit.roleId), hit.scope]).toEqual(['Storage Blob Data Contributor', 'deadLetterContainer']);
    const [container] = resourcesOfType(root, CONTAINER_TYPE);
    expect(container?.existing).toBe(true);
    expect(container?.symbol).toBe('deadLetterContainer');
    expect(getPath(container!.body, ['name'])?.text).toBe('deadLetterContainerName');
    const [blobService] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices');
    expect(getPath(container!.body, ['parent'])?.text).toBe(blobService!.symbol);
    expect(getPath(blobService!.body, ['parent'])?.text).toBe('storage');
    // No other role for that identity.
    expect(assignments.filter((a) => a.principal === 'eventGridPrincipalId')).toHaveLength(1);
    expect(containerGrants.filter((g) => g.principal === 'eventGridPrincipalId')).toEqual([]);
    expect(params(root).map((p) => p.name)).toEqual(
      expect.arrayContaining(['eventGridPrincipalId', 'deadLetterContainerName']),
    );
  });

  it("scopes the container module's assignments to each existing container of the account", () => {
    const mod = loadBicep('modules/containerRoles.bicep').root;
    const [containers] = resourcesOfType(mod, CONTAINER_TYPE);
    expect(containers?.existing).toBe(true);
    expect(containers!.node.text).toMatch(/for name in containerNames/);
    const [assignment] = resourcesOfType(mod, 'Microsoft.Authorization/roleAssignments');
    expect(assignment!.node.text).toMatch(/for \(name, i\) in containerNames/);
    expect(getPath(assignment!.body, ['scope'])?.text).toBe(`${containers!.symbol}[i]`);
    expect(getPath(assignment!.body, ['name'])?.text).toBe(`guid(${containers!.symbol}[i].id, principalId, roleId)`);
    // Every use of the module names a role of the roles variable.
    for (const g of containerGrants)
      expect({ symbol: g.symbol, role: g.role }).toEqual({ symbol: g.symbol, role: expect.any(String) as string });
    expect([...roleKeyById.values()]).toEqual(
      expect.arrayContaining(['storageBlobDataReader', 'storageBlobDataContributor', 'storageBlobDataOwner']),
    );
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
