import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {
  allBicepFiles,
  arrayItems,
  getPath,
  INFRA,
  loadBicep,
  objectEntries,
  outputs,
  params,
  readRepoFile,
  resourcesOfType,
  stringLiteral,
  variable,
} from './bicep';

interface Pkg {
  dependencies: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}
interface Lock {
  packages: Record<
    string,
    {
      version?: string;
      integrity?: string;
      dev?: boolean;
      devOptional?: boolean;
      /** A workspace package (packages/NAME), linked into node_modules. */
      link?: boolean;
      name?: string;
      dependencies?: Record<string, string>;
    }
  >;
}

const GPU_PROFILES = ['Consumption-GPU-NC8as-T4', 'Consumption-GPU-NC24-A100'];
/** AcrPull, from Microsoft's "Azure built-in roles" reference. */
const ACR_PULL = '7f951dda-4ed3-4680-a7ca-43fe172d538d';

describe('infra: trainer job on serverless GPU', () => {
  const { root, text } = loadBicep('modules/trainer.bicep');
  const [env] = resourcesOfType(root, 'Microsoft.App/managedEnvironments');
  const [job] = resourcesOfType(root, 'Microsoft.App/jobs');
  const gpuProfileName = stringLiteral(variable(root, 'gpuProfileName'));

  it('offers the T4 and A100 serverless GPU profiles, T4 by default', () => {
    for (const file of ['modules/trainer.bicep', 'main.bicep']) {
      const p = params(loadBicep(file).root).find((x) => x.name === 'gpuProfileType');
      expect(p).toBeDefined();
      expect(stringLiteral(p!.defaultValue)).toBe('Consumption-GPU-NC8as-T4');
      for (const profile of GPU_PROFILES) expect(p!.decorators.join('\n')).toContain(`'${profile}'`);
    }
  });

  it('creates a workload-profiles environment with the GPU profile', () => {
    expect(env).toBeDefined();
    const profiles = arrayItems(getPath(env!.body, ['properties', 'workloadProfiles'])).map((p) => objectEntries(p));
    expect(gpuProfileName).toBeTruthy();
    const gpu = profiles.find((p) => p.get('name')?.text === 'gpuProfileName');
    expect(gpu?.get('workloadProfileType')?.text).toBe('gpuProfileType');
    expect(profiles.some((p) => stringLiteral(p.get('workloadProfileType')) === 'Consumption')).toBe(true);
  });

  it("sends its logs to Log Analytics through Azure Monitor, without the workspace's shared key", () => {
    expect(stringLiteral(getPath(env!.body, ['properties', 'appLogsConfiguration', 'destination']))).toBe(
      'azure-monitor',
    );
    expect(getPath(env!.body, ['properties', 'appLogsConfiguration', 'logAnalyticsConfiguration'])).toBeUndefined();
    const [diag] = resourcesOfType(root, 'Microsoft.Insights/diagnosticSettings');
    expect(getPath(diag!.body, ['scope'])?.text).toBe(env!.symbol);
    const [workspace] = resourcesOfType(root, 'Microsoft.OperationalInsights/workspaces');
    expect(getPath(diag!.body, ['properties', 'workspaceId'])?.text).toBe(`${workspace!.symbol}.id`);
    const categories = arrayItems(getPath(diag!.body, ['properties', 'logs'])).map((l) => [
      stringLiteral(getPath(l, ['category'])),
      getPath(l, ['enabled'])?.text,
    ]);
    expect(categories).toEqual([
      ['ContainerAppConsoleLogs', 'true'],
      ['ContainerAppSystemLogs', 'true'],
    ]);
    // No shared key of any workspace is read anywhere in the templates.
    for (const rel of allBicepFiles())
      expect({ rel, text: loadBicep(rel).text }).not.toEqual({
        rel,
        text: expect.stringMatching(
          /\bsharedKey\s*:|primarySharedKey|secondarySharedKey|\bworkspace\w*\.listKeys\(/,
        ) as string,
      });
  });

  it('has a Manual-trigger job pinned to the GPU profile', () => {
    expect(job).toBeDefined();
    const props = getPath(job!.body, ['properties'])!;
    expect(stringLiteral(getPath(props, ['configuration', 'triggerType']))).toBe('Manual');
    expect(getPath(props, ['workloadProfileName'])?.text).toBe('gpuProfileName');
    expect(getPath(props, ['environmentId'])?.text).toBe(`${env!.symbol}.id`);
    expect(getPath(props, ['configuration', 'replicaTimeout'])?.text).toBe('replicaTimeoutSeconds');
  });

  it('sizes the replica for each GPU profile', () => {
    const sizes = objectEntries(variable(root, 'gpuResources')!);
    expect([...sizes.keys()].sort()).toEqual([...GPU_PROFILES].sort());
    const container = arrayItems(getPath(job!.body, ['properties', 'template', 'containers']))[0]!;
    expect(getPath(container, ['resources', 'cpu'])?.text).toBe('cpu');
    expect(getPath(container, ['resources', 'memory'])?.text).toBe('memory');
  });

  it('runs as its user-assigned identity, pulls with it, and gets the trainer environment', () => {
    expect(stringLiteral(getPath(job!.body, ['identity', 'type']))).toBe('UserAssigned');
    expect(getPath(job!.body, ['properties', 'configuration', 'registries'])?.text).toMatch(/identity: identityId/);
    const container = arrayItems(getPath(job!.body, ['properties', 'template', 'containers']))[0]!;
    const env = new Map(
      arrayItems(getPath(container, ['env'])).map((e) => {
        const o = objectEntries(e);
        return [stringLiteral(o.get('name'))!, o.get('value')!] as const;
      }),
    );
    expect(stringLiteral(env.get('TRIAGE_BACKEND'))).toBe('tensorflow');
    expect(env.get('AzureWebJobsStorage__blobServiceUri')?.text).toBe('storageBlobEndpoint');
    expect(env.get('AzureWebJobsStorage__clientId')?.text).toBe('identityClientId');
    expect(stringLiteral(env.get('AzureWebJobsStorage__credential'))).toBe('managedidentity');
    expect(env.has('RUN_ID')).toBe(true);
  });

  it('creates the job with a public placeholder image, never the registry image the hook builds later', () => {
    const container = arrayItems(getPath(job!.body, ['properties', 'template', 'containers']))[0]!;
    expect(getPath(container, ['image'])?.text).toBe('placeholderImage');
    const placeholder = stringLiteral(variable(root, 'placeholderImage'));
    // A public registry that needs no credentials (Microsoft's container registry), with a tag.
    expect(placeholder).toMatch(/^mcr\.microsoft\.com\/[a-z0-9/_.-]+:[\w.-]+$/);
    // What the starts send is the real image: the module's `image` output (app setting TRAINER_IMAGE).
    const imageOut = outputs(root).find((o) => o.name === 'image');
    expect(imageOut?.value.text).toBe('image');
    expect(variable(root, 'image')?.text).toContain("'${loginServer}/${imageRepository}:latest'");
    const main = loadBicep('main.bicep').text;
    expect(main).toMatch(/trainerImage: trainer\.outputs\.image\b/);
    expect(main).toMatch(/output TRAINER_IMAGE string = trainer\.outputs\.image$/m);
  });

  it('grants the job identity AcrPull on the registry before the job is created (dependsOn)', () => {
    const [registry] = resourcesOfType(root, 'Microsoft.ContainerRegistry/registries');
    const pulls = resourcesOfType(root, 'Microsoft.Authorization/roleAssignments').filter((r) =>
      /acrPullRoleId/.test(getPath(r.body, ['properties', 'roleDefinitionId'])?.text ?? ''),
    );
    expect(pulls).toHaveLength(1);
    const pull = pulls[0]!;
    expect(stringLiteral(variable(root, 'acrPullRoleId'))).toBe(ACR_PULL);
    expect(text.split('\n').find((l) => l.includes(ACR_PULL))).toContain('// AcrPull');
    expect(getPath(pull.body, ['scope'])?.text).toBe(registry!.symbol);
    expect(getPath(pull.body, ['properties', 'principalId'])?.text).toBe('identityPrincipalId');
    expect(stringLiteral(getPath(pull.body, ['properties', 'principalType']))).toBe('ServicePrincipal');
    expect(pull.node.text).toMatch(/= if \(createContainerRegistry\)/);
    // The job waits for it.
    const dependsOn = arrayItems(getPath(job!.body, ['dependsOn'])).map((n) => n.text);
    expect(dependsOn).toContain(pull.symbol);
    // ...and for it only through dependsOn: nothing in the job references it otherwise.
    expect(getPath(job!.body, ['properties'])!.text).not.toContain(pull.symbol);
    // The principal is the identity the job runs as.
    expect(loadBicep('main.bicep').text).toMatch(/identityPrincipalId: trainerIdentity\.outputs\.principalId/);
    expect(getPath(job!.body, ['identity'])!.text).toContain('identityId');
  });

  it('creates the container registry only when asked, without admin user', () => {
    const [registry] = resourcesOfType(root, 'Microsoft.ContainerRegistry/registries');
    expect(registry?.node.text).toMatch(/= if \(createContainerRegistry\)/);
    expect(getPath(registry!.body, ['properties', 'adminUserEnabled'])?.text).toBe('false');
  });
});

describe('infra: trainer image (infra/trainer.Dockerfile)', () => {
  const dockerfile = fs.readFileSync(path.join(INFRA, 'trainer.Dockerfile'), 'utf8');

  it('runs on a CUDA 11.x + cuDNN 8 Ubuntu runtime base, pinned by digest', () => {
    expect(dockerfile).toMatch(
      /^ARG CUDA_IMAGE=nvidia\/cuda:11\.\d+\.\d+-cudnn8-runtime-ubuntu\d\d\.\d\d@sha256:[0-9a-f]{64}$/m,
    );
    expect(dockerfile).toMatch(/^FROM \$\{CUDA_IMAGE\} AS base$/m);
    // Every other FROM is a stage of this file.
    for (const from of dockerfile.match(/^FROM \S+/gm)!) expect(from).toMatch(/^FROM (\$\{CUDA_IMAGE\}|base)$/);
  });

  it('refuses to build from a base image reference without a digest', () => {
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const base = stages.find((st) => /^\S+ AS base$/m.test(st))!;
    expect(base).toMatch(/^ARG CUDA_IMAGE$/m);
    const check = /^RUN (case "\$CUDA_IMAGE" in[\s\S]*?esac)$/m.exec(base)?.[1]?.replace(/\\\n/g, '\n');
    expect(check).toBeDefined();
    const run = (image: string) =>
      spawnSync('sh', ['-c', check!], { env: { PATH: process.env.PATH, CUDA_IMAGE: image }, encoding: 'utf8' });
    const pinned = /^ARG CUDA_IMAGE=(\S+)$/m.exec(dockerfile)![1]!;
    expect(run(pinned).status).toBe(0);
    const tagOnly = run(pinned.replace(/@sha256:.*$/, ''));
    expect(tagOnly.status).toBe(1);
    expect(tagOnly.stderr).toContain('must be pinned by digest');
    expect(run(`${pinned.replace(/@sha256:.*$/, '')}@sha256:1234`).status).toBe(1);
  });

  it('installs Node 22 and @tensorflow/tfjs-node-gpu 4.22 (the version of the locked CPU binding), from a lockfile', () => {
    expect(dockerfile).toMatch(/^ARG NODE_MAJOR=22$/m);
    const trainerLock = JSON.parse(readRepoFile('infra/trainer/package-lock.json')) as Lock;
    const rootLock = JSON.parse(readRepoFile('package-lock.json')) as Lock;
    const gpu = trainerLock.packages['node_modules/@tensorflow/tfjs-node-gpu'];
    expect(gpu?.version).toMatch(/^4\.22\.\d+$/);
    expect(gpu?.version).toBe(rootLock.packages['node_modules/@tensorflow/tfjs-node']?.version);
    expect(gpu?.integrity).toMatch(/^sha512-/);
    // No npm command resolves a version at build time: `npm ci` from a lockfile, and a rebuild that
    // runs the GPU binding's own install script.
    const runs = dockerfile
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((l) => l.startsWith('RUN '))
      .join('\n');
    const npmCommands = runs.match(/\bnpm \w+[^&\n]*/g)!;
    expect(npmCommands.length).toBeGreaterThanOrEqual(3);
    for (const c of npmCommands) expect(c).toMatch(/^npm (ci|rebuild @tensorflow\/tfjs-node-gpu|cache clean)\b/);
    expect(runs).not.toMatch(/\bnpm (install|i|add|update)\b|\byarn\b|\bnpx (-y |--yes )?\S+@/);
  });

  it("keeps infra/trainer's lockfile to the repository's versions (infra/trainer/lock.sh rewrites it)", () => {
    const rootPkg = JSON.parse(readRepoFile('package.json')) as Pkg;
    const trainerPkg = JSON.parse(readRepoFile('infra/trainer/package.json')) as Pkg;
    const rootLock = JSON.parse(readRepoFile('package-lock.json')) as Lock;
    const trainerLock = JSON.parse(readRepoFile('infra/trainer/package-lock.json')) as Lock;
    const gpuVersion = rootLock.packages['node_modules/@tensorflow/tfjs-node']!.version;
    // A difference here means: run `sh infra/trainer/lock.sh` after changing package.json.
    expect(trainerPkg.dependencies).toEqual({ ...rootPkg.dependencies, '@tensorflow/tfjs-node-gpu': gpuVersion });
    expect(trainerPkg.optionalDependencies).toEqual(rootPkg.optionalDependencies);
    expect(trainerPkg.devDependencies).toBeUndefined();
    expect(trainerLock.packages['']?.dependencies).toEqual(trainerPkg.dependencies);
    const stale: string[] = [];
    for (const [key, entry] of Object.entries(rootLock.packages)) {
      // The workspace packages are copied into the image from its build stage, not installed (below).
      if (key === '' || entry.link === true || key.startsWith('packages/')) continue;
      const t = trainerLock.packages[key];
      if (
        t === undefined
          ? !entry.dev && !entry.devOptional
          : t.version !== entry.version || t.integrity !== entry.integrity
      )
        stale.push(key);
    }
    for (const key of Object.keys(trainerLock.packages)) {
      if (
        key !== '' &&
        rootLock.packages[key] === undefined &&
        !key.startsWith('node_modules/@tensorflow/tfjs-node-gpu')
      )
        stale.push(key);
    }
    expect({ stale, fix: 'sh infra/trainer/lock.sh' }).toEqual({ stale: [], fix: 'sh infra/trainer/lock.sh' });
  });

  it('puts every workspace package the compiled code imports into node_modules, as the folder it publishes', () => {
    const rootLock = JSON.parse(readRepoFile('package-lock.json')) as Lock;
    const workspaces = Object.entries(rootLock.packages).filter(([key]) => key.startsWith('packages/'));
    expect(workspaces.map(([key]) => key).sort()).toEqual([
      'packages/local-functions-host',
      'packages/tfjs-wasm-kernels',
    ]);
    for (const [dir, entry] of workspaces) {
      const to = `./node_modules/${entry.name!}`;
      expect(dockerfile).toContain(`COPY --from=build --chown=root:root /build/${dir}/package.json ${to}/\n`);
      expect(dockerfile).toContain(`COPY --from=build --chown=root:root /build/${dir}/dist ${to}/dist\n`);
    }
    // ...built in the build stage, after `npm ci` linked them (it needs their package.json files).
    expect(dockerfile).toMatch(/COPY packages \.\/packages\nRUN npm ci [^\n]*\n[\s\S]*RUN npx tsc -b tsconfig\.json\n/);
  });

  it("installs what the trainer's plots need: vega and vega-lite are production dependencies, and the image installs those", () => {
    const pkg = JSON.parse(readRepoFile('package.json')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    // Every package src/ml/plots.ts loads (resolveModule('...')).
    const plotModules = [...readRepoFile('src/ml/plots.ts').matchAll(/resolveModule\('([^']+)'\)/g)].map((m) => m[1]!);
    expect(plotModules.sort()).toEqual(['vega', 'vega-lite']);
    for (const name of plotModules) {
      expect({
        name,
        production: pkg.dependencies[name] !== undefined,
        dev: pkg.devDependencies[name] !== undefined,
      }).toEqual({ name, production: true, dev: false });
    }
    // The stage whose node_modules the runtime image copies installs the production dependencies.
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const runtime = stages.find((st) => /^\S+ AS runtime$/m.test(st))!;
    const depsStage = /^COPY --from=(\w+)\b.*\/node_modules /m.exec(runtime)?.[1];
    const deps = stages.find((st) => new RegExp(`^\\S+ AS ${depsStage}$`, 'm').test(st))!;
    const install = deps
      .replace(/\\\n/g, ' ')
      .match(/^RUN .*$/gm)!
      .find((l) => /\bnpm ci\b/.test(l))!;
    expect(install).toMatch(/\bnpm ci --omit=dev\b/);
    expect(install).not.toMatch(/--omit=(optional|peer)|--only=|--workspace/);
    expect(deps).toMatch(/^COPY infra\/trainer\/package\.json infra\/trainer\/package-lock\.json \.\/$/m);
    const trainerPkg = JSON.parse(readRepoFile('infra/trainer/package.json')) as Pkg;
    for (const name of plotModules) expect(trainerPkg.dependencies[name]).toBe(pkg.dependencies[name]);
  });

  it('runs as a non-root user and starts the train-job command', () => {
    const users = [...dockerfile.matchAll(/^USER (\S+)$/gm)].map((m) => m[1]!);
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1]).not.toMatch(/^(root|0)(:|$)/);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/src\/cli\/main\.js", "train-job"\]$/m);
  });
});
