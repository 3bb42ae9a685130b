import { arrayItems, loadBicep, readRepoFile, resourcesOfType, stringLiteral, variable } from './bicep';

/** The deployment guide says what the templates do. */
describe('infra/README.md holds to the templates', () => {
  const guide = readRepoFile('infra/README.md');
  const readme = readRepoFile('README.md');
  const section = (text: string, heading: string) => {
    const start = text.indexOf(`\n${heading}\n`);
    expect({ heading, found: start >= 0 }).toEqual({ heading, found: true });
    const rest = text.slice(start + heading.length + 2);
    const next = rest.search(/^#{2,3} /m); // (a "# " line is a comment in a code block)
    return next < 0 ? rest : rest.slice(0, next);
  };

  it('says the dead-letter lifecycle rule deletes dead letters (storage.bicep has it)', () => {
    const storage = loadBicep('modules/storage.bicep');
    expect(resourcesOfType(storage.root, 'Microsoft.Storage/storageAccounts/managementPolicies')).toHaveLength(1);
    expect(guide).not.toMatch(/Nothing deletes dead-letter/i);
    expect(section(guide, '## Dead-lettered events')).toMatch(/lifecycle rule\s.*deletes dead-letter blobs/s);
  });

  it('names the placeholder image the job is created with', () => {
    const placeholder = stringLiteral(variable(loadBicep('modules/trainer.bicep').root, 'placeholderImage'))!;
    expect(guide).toContain(placeholder);
  });

  it('never tells anyone to start the trainer job without the template the launcher sends', () => {
    for (const [file, text] of [
      ['README.md', readme],
      ['infra/README.md', guide],
    ] as const) {
      const commands = text.split('\n').filter((l) => /^\s*az containerapp job start\b/.test(l));
      expect({ file, commands }).toEqual({ file, commands: [] });
    }
    expect(section(guide, '## First model')).toContain('/api/retrain');
  });

  it('says predictions appear only once a model is promoted, and how to promote the first one', () => {
    const upload = section(guide, '## First upload');
    expect(upload).toMatch(/prediction appears only once a model is promoted/i);
    expect(upload).toContain('"First model"');
    const first = section(guide, '## First model');
    expect(first).toContain('{"force": true}');
    expect(first).toContain('models promote');
  });

  it('says azd builds the app remotely on Linux, which holds while .funcignore leaves node_modules out', () => {
    expect(
      readRepoFile('.funcignore')
        .split('\n')
        .map((l) => l.trim()),
    ).toContain('node_modules');
    expect(readRepoFile('azure.yaml')).not.toMatch(/^\s*remoteBuild:\s*false/m);
    expect(section(guide, '## Deploy')).toMatch(/built remotely, on Linux x64/);
  });

  it("lists each identity's containers as roles.bicep grants them, and the storage network modes", () => {
    const roles = loadBicep('modules/roles.bicep').root;
    const list = (name: string) => arrayItems(variable(roles, name)).map((n) => stringLiteral(n)!);
    const table = section(guide, '## Roles and network exposure');
    const row = (identity: string, role: string) =>
      table.split('\n').find((l) => l.startsWith(`| ${identity} | ${role}`)) ?? '';
    const cells = (line: string) => [...line.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!);
    expect(cells(row('function app', 'Storage Blob Data Reader')).sort()).toEqual(
      list('functionReadContainers').sort(),
    );
    expect(cells(row('function app', 'Storage Blob Data Contributor')).sort()).toEqual(
      list('functionWriteContainers').sort(),
    );
    expect(cells(row('trainer job', 'Storage Blob Data Reader')).sort()).toEqual(
      [...list('trainerReadContainers'), ...list('trainerWriteContainers')].sort(),
    );
    expect(cells(row('function app', 'Storage Blob Data Owner')).sort()).toEqual(
      arrayItems(variable(loadBicep('modules/storage.bicep').root, 'hostContainers'))
        .map((n) => stringLiteral(n)!)
        .sort(),
    );
    for (const mode of ['public', 'firewall', 'private']) expect(table).toContain(`- \`${mode}\``);
    expect(readme).toMatch(/"Roles\s+and network exposure"/);
  });

  it('walks the deployment on Linux, macOS and Windows', () => {
    const deploy = section(guide, '## Deploy');
    expect(deploy).toContain('Linux and macOS');
    expect(deploy).toMatch(/Windows \(PowerShell/);
    expect(deploy).toContain('```powershell');
    expect(deploy).toContain('hooks/postdeploy.ps1');
  });
});
