/**
 * Runs a TypeScript entry point of src/ in a child node process, as `node dist/...` would run the
 * compiled one, without a build: the child compiles each .ts module in memory as it loads.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { TS_TRANSPILE_HOOK } from '../../src/jobs/launchers';

const BOOT = `${TS_TRANSPILE_HOOK}
process.argv.splice(1, 0, process.env.TRIAGE_TS_MAIN);
require(process.env.TRIAGE_TS_MAIN);
`;

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `file` (a path under the repository) with `args` and `env` added to this process's environment; resolves when it exits. */
export function runTs(file: string, args: string[], env: Record<string, string>): Promise<ProcessResult> {
  const main = path.resolve(__dirname, '..', '..', file);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', BOOT, '--', ...args], {
      env: { ...process.env, ...env, TRIAGE_TS_COMPILER: require.resolve('typescript'), TRIAGE_TS_MAIN: main },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
