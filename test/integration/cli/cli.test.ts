/** The `triage` command line against Azurite: upload a folder, status, and clear errors with exit codes. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildDeps } from '../../../src/composition';
import { loadConfig } from '../../../src/config';
import { buildProgram, run } from '../../../src/cli/main';
import { CONTAINERS } from '../../../src/storage/layout';
import { freshStore, testConnectionString } from '../../helpers/azurite';
import { digitPng } from '../../helpers/images';
import { handlePreprocess } from '../../../src/handlers/preprocess';
import { silentLog } from '../../../src/util/log';
import { capture } from '../../helpers/console';

describe('triage CLI', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'triage-cli-'));
    process.exitCode = undefined;
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    process.exitCode = undefined;
  });

  const deps = () => buildDeps(loadConfig({ AzureWebJobsStorage: testConnectionString() }), { instanceId: 'cli-test' });

  it('uploads a folder with virtual folders and a prefix, then reports status', async () => {
    const store = await freshStore();
    mkdirSync(path.join(dir, 'ward 3', 'Ärzte'), { recursive: true });
    writeFileSync(path.join(dir, 'a.png'), await digitPng(40));
    writeFileSync(path.join(dir, 'ward 3', 'b.png'), await digitPng(50, { seed: 2 }));
    writeFileSync(path.join(dir, 'ward 3', 'Ärzte', 'c.png'), Buffer.from('not an image'));
    const c = capture();
    try {
      await buildProgram(deps).parseAsync(['node', 'triage', 'upload', dir, '--prefix', 'batch-7']);
    } finally {
      c.restore();
    }
    expect(process.exitCode ?? 0).toBe(0);
    expect(c.out.join('\n')).toMatch(/Uploaded 3 of 3 files/);
    const names: string[] = [];
    for await (const e of store.list(CONTAINERS.uploads)) names.push(e.name);
    expect(names.sort()).toEqual(['batch-7/a.png', 'batch-7/ward 3/b.png', 'batch-7/ward 3/Ärzte/c.png']);

    // Process one of them so status has something in each column.
    const d = deps();
    const blob = await store.get(CONTAINERS.uploads, 'batch-7/ward 3/Ärzte/c.png');
    await handlePreprocess({ name: 'batch-7/ward 3/Ärzte/c.png', data: blob?.data ?? Buffer.alloc(0) }, d, silentLog);
    const s = capture();
    try {
      await buildProgram(deps).parseAsync(['node', 'triage', 'status', '--json']);
    } finally {
      s.restore();
    }
    const status = JSON.parse(s.out.join('\n')) as {
      uploads: number;
      rejected: number;
      pendingPreprocess: number;
      rejectionsByCode: Record<string, number>;
    };
    expect(status).toMatchObject({
      uploads: 3,
      rejected: 1,
      pendingPreprocess: 2,
      rejectionsByCode: { 'not-an-image': 1 },
    });
  });

  it.each([
    [['upload', '/no/such/folder'], /No such file or folder: \/no\/such\/folder/],
    [['upload', '.', '--concurrency', 'lots'], /--concurrency must be an integer/],
    [['samples', '/tmp/x', '--count', '0'], /--count must be an integer from 1 to 2000/],
    [['models', 'promote', 'nope'], /no model version "nope"/i],
    [['label', 'no/such.png', '3'], /no image named "no\/such.png"/],
  ])('fails clearly with a non-zero exit: triage %j', async (args, msg) => {
    await freshStore();
    const c = capture();
    let code: number;
    const argv = process.argv;
    try {
      process.env.AzureWebJobsStorage = testConnectionString();
      code = await run(['node', 'triage', ...args]);
    } finally {
      c.restore();
      process.argv = argv;
      delete process.env.AzureWebJobsStorage;
    }
    expect(code).toBeGreaterThan(0);
    expect(c.err.join('\n')).toMatch(msg);
  });

  it('refuses an empty folder', async () => {
    const c = capture();
    let code: number;
    try {
      code = await run(['node', 'triage', 'upload', dir]);
    } finally {
      c.restore();
    }
    expect(code).toBe(2);
    expect(c.err.join('\n')).toMatch(/holds no files/);
  });
});
