import * as fs from 'fs';
import * as path from 'path';
import {
  arrayItems,
  descendants,
  getPath,
  INFRA,
  loadBicep,
  Node,
  objectEntries,
  params,
  resourcesOfType,
  stringLiteral,
  stringTemplate,
  variable,
} from './bicep';

/** The `params` object of a module declaration of main.bicep, by the module file it uses. */
function moduleParams(file: string): Map<string, Node> {
  const { root } = loadBicep('main.bicep');
  const mod = root.namedChildren.find((n) => n.type === 'module_declaration' && n.text.includes(`'${file}'`));
  expect({ file, declared: mod !== undefined }).toEqual({ file, declared: true });
  return objectEntries(
    getPath(
      descendants(mod!).find((n) => n.type === 'object')!,
      ['params'],
    )!,
  );
}

function moduleDecl(file: string): Node {
  return loadBicep('main.bicep').root.namedChildren.find(
    (n) => n.type === 'module_declaration' && n.text.includes(`'${file}'`),
  )!;
}

/** IPv4 CIDR as [first, last] address numbers. */
function range(cidr: string): [number, number] {
  const [ip, bits] = cidr.split('/');
  const base = ip!.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  expect(base % size).toBe(0);
  return [base, base + size - 1];
}

/** Bicep's cidrSubnet(network, newBits, index) for IPv4. */
function cidrSubnet(network: string, prefix: number, index: number): string {
  const [first] = range(network);
  const start = first + index * 2 ** (32 - prefix);
  const octets = [24, 16, 8, 0].map((s) => Math.floor(start / 2 ** s) % 256);
  return `${octets.join('.')}/${prefix}`;
}

describe('infra: storage network exposure (storageNetworkAccess)', () => {
  const main = loadBicep('main.bicep');

  it('keeps storage public by default, so `azd up` works from any machine, and offers a firewall and private endpoints', () => {
    const p = params(main.root).find((x) => x.name === 'storageNetworkAccess');
    expect(stringLiteral(p?.defaultValue)).toBe('public');
    for (const mode of ['public', 'firewall', 'private']) expect(p!.decorators.join('\n')).toContain(`'${mode}'`);
    const json = JSON.parse(fs.readFileSync(path.join(INFRA, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: string }>;
    };
    expect(json.parameters.storageNetworkAccess?.value).toBe('${STORAGE_NETWORK_ACCESS=public}');
    expect(json.parameters.storageAllowedIpRanges?.value).toBe('${STORAGE_ALLOWED_IP_RANGES}');
    // The network and the private endpoints exist only when asked for.
    expect(moduleDecl('modules/network.bicep').text).toMatch(/= if \(storageIsRestricted\)/);
    expect(moduleDecl('modules/storagePrivateEndpoints.bicep').text).toMatch(
      /= if \(storageNetworkAccess == 'private'\)/,
    );
    expect(variable(main.root, 'storageIsRestricted')?.text).toBe("storageNetworkAccess != 'public'");
  });

  it("denies every network but the app's and the trainer's subnets, trusted services and the listed IPs when restricted", () => {
    const storage = loadBicep('modules/storage.bicep').root;
    const [account] = resourcesOfType(storage, 'Microsoft.Storage/storageAccounts');
    const acls = getPath(account!.body, ['properties', 'networkAcls'])!;
    expect(acls.text).toMatch(/^networkAccess == 'public'\s*\?/);
    const firewall = variable(storage, 'firewall')!;
    expect(stringLiteral(getPath(firewall, ['defaultAction']))).toBe('Deny');
    expect(stringLiteral(getPath(firewall, ['bypass']))).toBe('AzureServices');
    expect(getPath(firewall, ['virtualNetworkRules'])?.text).toBe('virtualNetworkRules');
    expect(getPath(firewall, ['ipRules'])?.text).toBe('ipRules');
    expect(variable(storage, 'virtualNetworkRules')?.text).toMatch(/^\[\s*for id in allowedSubnetIds:/);
    expect(variable(storage, 'ipRules')?.text).toMatch(/^\[\s*for range in allowedIpRanges:/);
    const passed = moduleParams('modules/storage.bicep');
    expect(passed.get('networkAccess')?.text).toBe('storageNetworkAccess');
    expect(passed.get('allowedSubnetIds')?.text).toBe(
      'storageIsRestricted ? [network.outputs.appSubnetId, network.outputs.trainerSubnetId] : []',
    );
    expect(passed.get('allowedIpRanges')?.text).toMatch(
      /^storageIsRestricted && .*split\(storageAllowedIpRanges, ','\) : \[\]$/,
    );
  });

  it('puts the function app and the trainer environment in their subnets when restricted, and nowhere otherwise', () => {
    expect(moduleParams('modules/functionapp.bicep').get('virtualNetworkSubnetId')?.text).toBe(
      "storageIsRestricted ? network.outputs.appSubnetId : ''",
    );
    expect(moduleParams('modules/trainer.bicep').get('infrastructureSubnetId')?.text).toBe(
      "storageIsRestricted ? network.outputs.trainerSubnetId : ''",
    );
    const fn = loadBicep('modules/functionapp.bicep').root;
    const [site] = resourcesOfType(fn, 'Microsoft.Web/sites');
    expect(getPath(site!.body, ['properties', 'virtualNetworkSubnetId'])?.text).toBe(
      'empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId',
    );
    const tr = loadBicep('modules/trainer.bicep').root;
    const [env] = resourcesOfType(tr, 'Microsoft.App/managedEnvironments');
    const vnetConfig = getPath(env!.body, ['properties', 'vnetConfiguration'])!;
    expect(vnetConfig.text).toMatch(/^empty\(infrastructureSubnetId\)\s*\?\s*null/);
    expect(vnetConfig.text).toMatch(/infrastructureSubnetId: infrastructureSubnetId/);
    for (const [file, name] of [
      ['modules/functionapp.bicep', 'virtualNetworkSubnetId'],
      ['modules/trainer.bicep', 'infrastructureSubnetId'],
    ] as const) {
      expect(stringLiteral(params(loadBicep(file).root).find((p) => p.name === name)?.defaultValue)).toBe('');
    }
  });

  it('carves three disjoint subnets: app and trainer delegated to Container Apps with the storage service endpoint', () => {
    const net = loadBicep('modules/network.bicep').root;
    const space = stringLiteral(params(net).find((p) => p.name === 'addressPrefix')?.defaultValue)!;
    const [vnet] = resourcesOfType(net, 'Microsoft.Network/virtualNetworks');
    const subnets = arrayItems(getPath(vnet!.body, ['properties', 'subnets'])).map((s) => {
      const name = getPath(s, ['name'])!.text;
      const m = /^cidrSubnet\(addressPrefix, (\d+), (\d+)\)$/.exec(getPath(s, ['properties', 'addressPrefix'])!.text)!;
      return {
        name: stringLiteral(variable(net, name)),
        cidr: cidrSubnet(space, Number(m[1]), Number(m[2])),
        delegation: stringLiteral(
          arrayItems(getPath(s, ['properties', 'delegations'])).map((d) =>
            getPath(d, ['properties', 'serviceName']),
          )[0],
        ),
        endpoints: arrayItems(getPath(s, ['properties', 'serviceEndpoints'])).map((e) =>
          stringLiteral(getPath(e, ['service'])),
        ),
      };
    });
    expect(subnets.map((s) => [s.name, s.delegation, s.endpoints])).toEqual([
      ['function-app', 'Microsoft.App/environments', ['Microsoft.Storage']],
      ['trainer', 'Microsoft.App/environments', ['Microsoft.Storage']],
      ['private-endpoints', undefined, []],
    ]);
    const [lo, hi] = range(space);
    const ranges = subnets.map((s) => range(s.cidr));
    for (const [a, b] of ranges) expect(a >= lo && b <= hi).toBe(true);
    ranges.forEach(([a, b], i) => ranges.slice(i + 1).forEach(([c, d]) => expect(b < c || d < a).toBe(true)));
    // Container Apps needs at least a /27 for a workload-profiles environment.
    expect(Number(subnets[1]!.cidr.split('/')[1])).toBeLessThanOrEqual(27);
  });

  it('gives the account private endpoints for blob and queue, resolved through privatelink zones linked to the network', () => {
    const pe = loadBicep('modules/storagePrivateEndpoints.bicep').root;
    expect(arrayItems(variable(pe, 'services')).map((n) => stringLiteral(n))).toEqual(['blob', 'queue']);
    const [zones] = resourcesOfType(pe, 'Microsoft.Network/privateDnsZones');
    expect(stringTemplate(getPath(zones!.body, ['name']))).toBe(
      'privatelink.${service}.${environment().suffixes.storage}',
    );
    const [link] = resourcesOfType(pe, 'Microsoft.Network/privateDnsZones/virtualNetworkLinks');
    expect(getPath(link!.body, ['properties', 'virtualNetwork', 'id'])?.text).toBe('vnetId');
    const [endpoint] = resourcesOfType(pe, 'Microsoft.Network/privateEndpoints');
    const conn = arrayItems(getPath(endpoint!.body, ['properties', 'privateLinkServiceConnections']))[0]!;
    expect(getPath(conn, ['properties', 'privateLinkServiceId'])?.text).toBe('storage.id');
    expect(arrayItems(getPath(conn, ['properties', 'groupIds'])).map((n) => n.text)).toEqual(['service']);
    const [group] = resourcesOfType(pe, 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups');
    expect(getPath(group!.body, ['parent'])?.text).toBe('endpoints[i]');
    const passed = moduleParams('modules/storagePrivateEndpoints.bicep');
    expect(passed.get('subnetId')?.text).toBe("storageIsRestricted ? network.outputs.privateEndpointSubnetId : ''");
    expect(passed.get('vnetId')?.text).toBe("storageIsRestricted ? network.outputs.id : ''");
  });
});
