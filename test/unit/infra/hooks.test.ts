import { execFileSync } from 'node:child_process';
import { readRepoFile, REPO_ROOT } from './bicep';

/** The post-deploy hook of azure.yaml for one platform: its shell and what it runs. */
function hook(yaml: string, platform: 'posix' | 'windows'): { shell?: string; run?: string } {
  const block = new RegExp(`^ {4}${platform}:\\n((?: {6}.*\\n|\\s*#.*\\n)+)`, 'm').exec(yaml)?.[1] ?? '';
  const field = (name: string) => new RegExp(`^ {6}${name}: (.+)$`, 'm').exec(block)?.[1]?.trim();
  return { shell: field('shell'), run: field('run') };
}

describe('infra: post-deploy hooks on Linux, macOS and Windows', () => {
  const yaml = readRepoFile('azure.yaml');
  const sh = readRepoFile('infra/hooks/postdeploy.sh');
  const ps1 = readRepoFile('infra/hooks/postdeploy.ps1');

  it('runs the POSIX script with sh, and a PowerShell script on Windows (no bash there)', () => {
    expect(yaml).toMatch(/^hooks:\n {2}postdeploy:\n/m);
    expect(hook(yaml, 'posix')).toEqual({ shell: 'sh', run: './infra/hooks/postdeploy.sh' });
    expect(hook(yaml, 'windows')).toEqual({ shell: 'pwsh', run: './infra/hooks/postdeploy.ps1' });
  });

  it('checks out shell scripts with LF endings everywhere (.gitattributes), and keeps them LF in the repository', () => {
    expect(
      readRepoFile('.gitattributes')
        .split('\n')
        .map((l) => l.trim()),
    ).toContain('*.sh text eol=lf');
    const attrs = execFileSync('git', ['check-attr', 'eol', 'text', '--', 'infra/hooks/postdeploy.sh'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(attrs).toContain('infra/hooks/postdeploy.sh: eol: lf');
    expect(attrs).toContain('infra/hooks/postdeploy.sh: text: set');
    expect(sh).not.toContain('\r');
    expect(sh.startsWith('#!/bin/sh\n')).toBe(true);
  });

  it('does the same two steps in both scripts: the Event Grid deployment, then the trainer image', () => {
    for (const script of [sh, ps1]) {
      for (const name of [
        'AZURE_SUBSCRIPTION_ID',
        'AZURE_RESOURCE_GROUP',
        'FUNCTION_APP_NAME',
        'EVENTGRID_SYSTEM_TOPIC_NAME',
        'AZURE_CONTAINER_REGISTRY_NAME',
        'SKIP_TRAINER_IMAGE_BUILD',
        'BLOBS_KEY_WAIT_ATTEMPTS',
      ]) {
        expect({ name, used: script.includes(name) }).toEqual({ name, used: true });
      }
      expect(script).toContain('systemKeys.blobs_extension');
      expect(script).toMatch(/eventgrid\.bicep/);
      expect(script).toMatch(/functionAppName="?\$(env:)?FUNCTION_APP_NAME/);
      expect(script).toMatch(/systemTopicName="?\$(env:)?EVENTGRID_SYSTEM_TOPIC_NAME/);
      expect(script).toMatch(/--name ["']image-triage-eventgrid["']/);
      expect(script).toMatch(/az acr build --registry/);
      expect(script).toContain('trainer.Dockerfile');
    }
    // The same build context, never node_modules.
    const contextOf = (s: string) =>
      /(?:for item in|foreach \(\$item in) ([^;)\n]+)/
        .exec(s)?.[1]
        ?.replace(/['",]/g, ' ')
        .split(/\s+/)
        .filter((x) => x !== '')
        .sort();
    expect(contextOf(sh)).toEqual([
      'functions',
      'package-lock.json',
      'package.json',
      'packages',
      'src',
      'tsconfig.json',
    ]);
    expect(contextOf(ps1)).toEqual(contextOf(sh));
    // ...plus the trainer's lockfile, where the Dockerfile reads it (infra/trainer/).
    expect(sh).toMatch(
      /^cp "\$infra\/trainer\/package\.json" "\$infra\/trainer\/package-lock\.json" "\$context\/infra\/trainer\/"$/m,
    );
    expect(ps1).toMatch(
      /foreach \(\$file in 'package\.json', 'package-lock\.json'\)[\s\S]*?Join-Path \$infra 'trainer'/,
    );
    expect(ps1).toMatch(/\$trainerDeps = Join-Path \(Join-Path \$context 'infra'\) 'trainer'/);
  });
});
