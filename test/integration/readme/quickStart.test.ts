/**
 * The README's quick start and service walk-through, run as a new user pastes them: every command
 * of their ```bash blocks, in order, against a fresh data folder (a temporary
 * TRIAGE_LOCAL_DATA_DIR) and a free HTTP port; each must exit 0. The commands are read from the
 * README, so a changed command is run as changed. `npm start` runs in the background for the rest
 * of the walk-through, as in its own terminal.
 *
 * Two commands are not run, and only these: `npm install` (this test runs inside an installed
 * checkout) and `npm test` (this test is part of it). `npm run demo` runs with its smallest
 * options (--count 20 --epochs 1) to keep the test to minutes. Waits are generous: a busy machine
 * is slow, not broken.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const NOT_RUN = ['npm install', 'npm test'];
const DEMO_OPTIONS = '-- --count 20 --epochs 1';
/** Per command: a cold build, training or Azurite's start on a loaded machine take long. */
const COMMAND_MS = 30 * 60_000;

/** The lines of the ```bash blocks of the README section whose heading starts with `heading`, comments removed. */
export function readmeCommands(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`README has no section "## ${heading}"`);
  const end = markdown.indexOf('\n## ', start + 4);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  const commands: string[] = [];
  for (const m of section.matchAll(/```bash\n([\s\S]*?)```/g)) {
    for (const line of (m[1] ?? '').split('\n')) {
      const cmd = line.replace(/(^|\s)#.*$/, '').trim();
      if (cmd !== '') commands.push(cmd);
    }
  }
  return commands;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = http.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Ran {
  code: number | null;
  output: string;
}

function run(cmd: string, env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', cmd], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Starts a long-running command in its own process group; resolves once `ready` appears in its output. */
function background(
  cmd: string,
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn('bash', ['-c', cmd], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${cmd}: not ready within ${COMMAND_MS / 1000} s:\n${output}`)),
      COMMAND_MS,
    );
    const onData = (c: Buffer) => {
      output += c.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${String(code)} before it was ready:\n${output}`));
    });
  });
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  process.kill(-child.pid, 'SIGINT');
  const kill = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGKILL'), 120_000);
  await exited;
  clearTimeout(kill);
}

describe('README quick start and service walk-through', () => {
  const commands = readmeCommands(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), 'Quick start');

  it('are what this test runs: npm start in the background, the demo, and the CLI', () => {
    expect(commands.filter((c) => NOT_RUN.includes(c))).toEqual(NOT_RUN);
    expect(commands).toContain('npm start');
    expect(commands.some((c) => c.startsWith('npm run demo'))).toBe(true);
    expect(commands.some((c) => /^npm run triage -- label /.test(c))).toBe(true);
  });

  it(
    'every command exits 0, in order, on a fresh data folder',
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'triage-readme-'));
      const dataDir = path.join(dir, 'azurite');
      const hadSamples = existsSync(path.join(ROOT, 'samples'));
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        TRIAGE_LOCAL_DATA_DIR: dataDir,
        TRIAGE_LOCAL_HTTP_PORT: String(await freePort()),
      };
      // The README's commands talk to the embedded runtime (local.settings.json), whatever this shell has.
      for (const k of Object.keys(env)) if (k.startsWith('AzureWebJobsStorage')) delete env[k];
      let server: { child: ChildProcess; output: () => string } | undefined;
      const ran: string[] = [];
      try {
        for (const command of commands) {
          if (NOT_RUN.includes(command)) continue;
          if (command === 'npm start') {
            server = await background(command, env, /Watching uploads\//);
            ran.push(command);
            continue;
          }
          const label = /^npm run triage -- label (\S+)/.exec(command);
          if (label) {
            // The README's label names a file that `triage samples` wrote and `upload` uploaded...
            const upload = commands.find((c) => /^npm run triage -- upload /.test(c)) ?? '';
            const prefix = /--prefix (\S+)/.exec(upload)?.[1] ?? '';
            const folder = /upload (\S+)/.exec(upload)?.[1] ?? '';
            expect((label[1] ?? '').startsWith(prefix)).toBe(true);
            expect(existsSync(path.join(ROOT, folder, (label[1] ?? '').slice(prefix.length)))).toBe(true);
            // ...and that the running function app has preprocessed: wait for it, as a user would look at status.
            for (;;) {
              const s = await run('node dist/src/cli/main.js status --json', env);
              expect(s.code).toBe(0);
              const status = JSON.parse(s.output.slice(s.output.indexOf('{'))) as {
                pendingPreprocess: number;
                uploads: number;
              };
              if (status.uploads > 0 && status.pendingPreprocess === 0) break;
              await new Promise((r) => setTimeout(r, 2000));
            }
          }
          const actual =
            command.startsWith('npm run demo') && !command.includes(' -- ') ? `${command} ${DEMO_OPTIONS}` : command;
          const r = await run(actual, env);
          expect({ command: actual, code: r.code, output: r.code === 0 ? '' : r.output }).toEqual({
            command: actual,
            code: 0,
            output: '',
          });
          ran.push(command);
        }
      } finally {
        if (server !== undefined) await stopGroup(server.child);
        if (!hadSamples) rmSync(path.join(ROOT, 'samples'), { recursive: true, force: true });
        rmSync(dir, { recursive: true, force: true });
        rmSync(`${dataDir}-demo`, { recursive: true, force: true });
      }
      expect(ran).toEqual(commands.filter((c) => !NOT_RUN.includes(c)));
      // npm start said where its data is.
      expect(server?.output()).toContain(`data in ${dataDir}`);
    },
    4 * 60 * 60_000,
  );
});
