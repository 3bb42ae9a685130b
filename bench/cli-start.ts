/**
 * How long the command line takes to answer, as a user types it, against the compiled CLI run
 * directly (the peer, measured in the same run):
 *
 *   npm run bench:cli [-- --runs 5]
 *
 *   npm run triage -- --help     vs  node dist/src/cli/main.js --help
 *   npm run triage -- status     vs  node dist/src/cli/main.js status   (against an in-memory Azurite)
 *   node scripts/run.js --check  (the launcher's own "are the sources newer than dist/?" check)
 *   tsc -b --dry                 (the alternative: TypeScript's own up-to-date check, for comparison)
 *
 * Wall time (median and best of the runs) and the CPU time of the command and its children (from
 * /proc/self/stat, so on Linux only), which a busy machine changes less than wall time. Writes
 * bench/results/cli-start.md: this run first, with the date, the machine and its load (uptime),
 * then the earlier runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAzurite } from '@image-triage/local-functions-host';
import { projectRoot } from '../src/local/settings';
import { BlobStore } from '../src/storage/blobStore';
import { median } from './sweep';
import { uptime } from './support';

interface Case {
  name: string;
  cmd: string;
  args: string[];
  /** The bar: answer within this many seconds (median wall time on a quiet machine). */
  bar?: number;
}

interface Measured {
  walls: number[];
  cpus: number[];
  code: number;
}

const ROOT = projectRoot();
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds of this process's waited-for children (and theirs), or undefined off Linux. */
function childrenCpu(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3; cutime and cstime are fields 16 and 17.
    return (Number(fields[13]) + Number(fields[14])) / clockTicks;
  } catch {
    return undefined;
  }
}

function measure(c: Case, runs: number, env: NodeJS.ProcessEnv): Measured {
  const m: Measured = { walls: [], cpus: [], code: 0 };
  for (let i = 0; i < runs; i++) {
    const cpu0 = childrenCpu();
    const t0 = performance.now();
    const r = spawnSync(c.cmd, c.args, { cwd: ROOT, env, encoding: 'utf8' });
    const wall = (performance.now() - t0) / 1000;
    const cpu1 = childrenCpu();
    if (r.status !== 0) {
      m.code = r.status ?? 1;
      console.error(`${c.name}: exit ${String(r.status)}\n${r.stdout}\n${r.stderr}`);
    }
    m.walls.push(wall);
    if (cpu0 !== undefined && cpu1 !== undefined) m.cpus.push(cpu1 - cpu0);
  }
  return m;
}

async function main(): Promise<void> {
  const runs = Number(argValue('--runs', '5'));
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs must be a positive integer, got ${argValue('--runs', '')}`);
  const out = path.resolve(ROOT, argValue('--out', path.join('bench', 'results', 'cli-start.md')));
  const before = uptime();
  const azurite = await startAzurite({});
  // The containers npm start creates, so that status has what it reads.
  await BlobStore.fromConnection({
    kind: 'connectionString',
    connectionString: azurite.connectionString,
  }).ensureContainers();
  // The status commands talk to this Azurite; nothing else of the environment changes.
  const env = { ...process.env, AzureWebJobsStorage: azurite.connectionString };
  const cli = path.join('dist', 'src', 'cli', 'main.js');
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  const cases: Case[] = [
    { name: 'npm run triage -- --help', cmd: NPM, args: ['run', 'triage', '--', '--help'], bar: 3 },
    { name: 'node dist/src/cli/main.js --help (peer)', cmd: process.execPath, args: [cli, '--help'] },
    { name: 'npm run triage -- status', cmd: NPM, args: ['run', 'triage', '--', 'status'], bar: 3 },
    { name: 'node dist/src/cli/main.js status (peer)', cmd: process.execPath, args: [cli, 'status'] },
    {
      name: 'node scripts/run.js --check (launcher check alone)',
      cmd: process.execPath,
      args: [path.join('scripts', 'run.js'), '--check'],
    },
    {
      name: 'tsc -b --dry (TypeScript up-to-date check, alternative)',
      cmd: process.execPath,
      args: [tsc, '-b', 'tsconfig.json', '--dry'],
    },
  ];
  const results: Array<{ c: Case; m: Measured }> = [];
  try {
    // Once unmeasured: a build if the sources changed, warm file caches.
    measure(cases[0] as Case, 1, env);
    // Interleaved rounds, so a change of load hits every case alike.
    const acc = cases.map(() => ({ walls: [] as number[], cpus: [] as number[], code: 0 }));
    for (let round = 0; round < runs; round++) {
      cases.forEach((c, i) => {
        const m = measure(c, 1, env);
        const a = acc[i] as Measured;
        a.walls.push(...m.walls);
        a.cpus.push(...m.cpus);
        if (m.code !== 0) a.code = m.code;
      });
    }
    cases.forEach((c, i) => results.push({ c, m: acc[i] as Measured }));
  } finally {
    await azurite.stop();
  }
  const after = uptime();

  const f = (x: number) => x.toFixed(2);
  const rows = results.map(({ c, m }) => {
    const med = median(m.walls);
    const bar = c.bar === undefined ? '' : med <= c.bar ? `under ${c.bar} s` : `OVER ${c.bar} s`;
    return `| \`${c.name}\` | ${f(med)} | ${f(Math.min(...m.walls))} | ${m.cpus.length > 0 ? f(median(m.cpus)) : '-'} | ${m.code === 0 ? 0 : m.code} | ${bar} |`;
  });
  const peerOf = (name: string) => results.find((r) => r.c.name.startsWith(name))?.m;
  const ratio = (ours: string, peer: string) => {
    const a = peerOf(ours);
    const b = peerOf(peer);
    return a && b ? (median(a.walls) / median(b.walls)).toFixed(2) : '-';
  };
  const cpu = os.cpus();
  const section = [
    `## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `Machine: ${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, ${os.platform()} ${os.release()}.`,
    `Load (uptime) before: \`${before}\`; after: \`${after}\`.`,
    `${runs} runs of each, interleaved; wall time in seconds (median, best) and CPU seconds of the command and its children (median).`,
    '',
    '| command | wall median | wall best | CPU | exit | bar |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    `Launcher overhead (median wall, npm run triage / node dist): --help ${ratio('npm run triage -- --help', 'node dist/src/cli/main.js --help')}x, status ${ratio('npm run triage -- status', 'node dist/src/cli/main.js status')}x.`,
    '',
  ].join('\n');
  console.log(section);

  const header = '# CLI start-up times\n\nWritten by `npm run bench:cli` (bench/cli-start.ts); newest run first.\n\n';
  const previous = existsSync(out)
    ? readFileSync(out, 'utf8').replace(/^# CLI start-up times[\s\S]*?(?=^## )/m, '')
    : '';
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, header + section + (previous.startsWith('## ') ? '\n' + previous : ''));
  console.log(`written to ${path.relative(ROOT, out)}`);
  if (results.some((r) => r.m.code !== 0)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
