import { ALL_CONTAINERS, CONTAINERS } from '../../../src/storage/layout';
import {
  arrayItems,
  findProperties,
  getPath,
  loadBicep,
  outputs,
  params,
  propertyValue,
  resourcesOfType,
  stringLiteral,
  stringTemplate,
  variable,
} from './bicep';

describe('infra: storage account', () => {
  const { root } = loadBicep('modules/storage.bicep');
  const [account] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts');
  const [blobService] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices');

  /** The single value of a property inside `scope`, as source text. */
  const valueOf = (scope: Parameters<typeof findProperties>[0], key: string): string[] =>
    findProperties(scope, key).map((p) => propertyValue(p).text);

  /** A string literal, or a variable of this file holding one. */
  const literalOrVariable = (n: Parameters<typeof stringLiteral>[0]): string | undefined =>
    n?.type === 'identifier' ? stringLiteral(variable(root, n.text)) : stringLiteral(n);

  it('creates every container of src/storage/layout.ts', () => {
    const names = arrayItems(variable(root, 'appContainers')).map(literalOrVariable);
    expect(new Set(names)).toEqual(new Set(ALL_CONTAINERS));
    // ...and the container loop iterates that list.
    const containers = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices/containers');
    const loop = containers.find((c) => c.node.text.includes('for containerName in appContainers'));
    expect(loop).toBeDefined();
  });

  it('creates the Flex Consumption deployment container', () => {
    const containers = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/blobServices/containers');
    expect(containers.some((c) => getPath(c.body, ['name'])?.text === 'deploymentContainerName')).toBe(true);
  });

  it('turns shared keys and public blob access off and requires TLS 1.2', () => {
    expect(account).toBeDefined();
    const props = getPath(account!.body, ['properties'])!;
    expect(valueOf(props, 'allowSharedKeyAccess')).toEqual(['false']);
    expect(valueOf(props, 'allowBlobPublicAccess')).toEqual(['false']);
    expect(valueOf(props, 'minimumTlsVersion')).toEqual(["'TLS1_2'"]);
    expect(valueOf(props, 'supportsHttpsTrafficOnly')).toEqual(['true']);
  });

  it('keeps deleted blobs (soft delete) and versions', () => {
    expect(blobService).toBeDefined();
    const props = getPath(blobService!.body, ['properties'])!;
    expect(getPath(props, ['deleteRetentionPolicy', 'enabled'])?.text).toBe('true');
    expect(getPath(props, ['containerDeleteRetentionPolicy', 'enabled'])?.text).toBe('true');
    expect(getPath(props, ['isVersioningEnabled'])?.text).toBe('true');
  });

  it('has no container with public access', () => {
    for (const p of findProperties(root, 'publicAccess')) expect(propertyValue(p).text).toBe("'None'");
  });

  it('puts the Event Grid system topic on the account', () => {
    const [topic] = resourcesOfType(root, 'Microsoft.EventGrid/systemTopics');
    expect(topic).toBeDefined();
    expect(getPath(topic!.body, ['properties', 'source'])?.text).toBe('storage.id');
    expect(stringLiteral(getPath(topic!.body, ['properties', 'topicType']))).toBe('Microsoft.Storage.StorageAccounts');
  });

  it('gives the system topic a system-assigned identity for dead-lettering, and outputs it and the container', () => {
    const [topic] = resourcesOfType(root, 'Microsoft.EventGrid/systemTopics');
    expect(stringLiteral(getPath(topic!.body, ['identity', 'type']))).toBe('SystemAssigned');
    const outs = new Map(outputs(root).map((o) => [o.name, o.value.text]));
    expect(outs.get('systemTopicPrincipalId')).toBe(`${topic!.symbol}.identity.principalId`);
    // The dead-letter container is one of the containers created, under its layout name.
    expect(stringLiteral(variable(root, 'deadLetterContainerName'))).toBe(CONTAINERS.deadLetter);
    expect(outs.get('deadLetterContainerName')).toBe('deadLetterContainerName');
    expect(arrayItems(variable(root, 'appContainers')).map((n) => n.text)).toContain('deadLetterContainerName');
  });

  it('deletes dead-lettered events, and their versions, after deadLetterRetentionDays (and nothing else)', () => {
    const [policy] = resourcesOfType(root, 'Microsoft.Storage/storageAccounts/managementPolicies');
    expect(policy).toBeDefined();
    expect(getPath(policy!.body, ['parent'])?.text).toBe('storage');
    expect(stringLiteral(getPath(policy!.body, ['name']))).toBe('default');
    const rules = arrayItems(getPath(policy!.body, ['properties', 'policy', 'rules']));
    expect(rules).toHaveLength(1);
    const rule = rules[0]!;
    expect(getPath(rule, ['enabled'])?.text).toBe('true');
    expect(stringLiteral(getPath(rule, ['type']))).toBe('Lifecycle');
    const prefixes = arrayItems(getPath(rule, ['definition', 'filters', 'prefixMatch'])).map(stringTemplate);
    expect(prefixes).toEqual(['${deadLetterContainerName}/']);
    expect(
      getPath(rule, ['definition', 'actions', 'baseBlob', 'delete', 'daysAfterModificationGreaterThan'])?.text,
    ).toBe('deadLetterRetentionDays');
    expect(getPath(rule, ['definition', 'actions', 'version', 'delete', 'daysAfterCreationGreaterThan'])?.text).toBe(
      'deadLetterRetentionDays',
    );
    const days = params(root).find((p) => p.name === 'deadLetterRetentionDays');
    expect(days?.defaultValue?.text).toBe('30');
  });
});

describe('infra: Application Insights', () => {
  const { root } = loadBicep('modules/monitoring.bicep');

  it('disables local (instrumentation key) authentication', () => {
    const [component] = resourcesOfType(root, 'Microsoft.Insights/components');
    expect(component).toBeDefined();
    const props = getPath(component!.body, ['properties'])!;
    const disable = findProperties(props, 'DisableLocalAuth').concat(findProperties(props, 'disableLocalAuth'));
    expect(disable.map((p) => propertyValue(p).text)).toEqual(['true']);
  });

  it('sends its data to the Log Analytics workspace', () => {
    expect(resourcesOfType(root, 'Microsoft.OperationalInsights/workspaces')).toHaveLength(1);
    const [component] = resourcesOfType(root, 'Microsoft.Insights/components');
    expect(getPath(component!.body, ['properties', 'WorkspaceResourceId'])?.text).toBe('workspace.id');
  });
});
