/**
 * Runs an entry point of src/ in a child node process as `node dist/...` runs it: its compiled
 * JavaScript under dist/ (src/util/compiled.ts), which jest's global setup brings up to date
 * with the sources before any test runs.
 */
import { spawn } from 'node:child_process';
import { compiledPath } from '../../src/util/compiled';

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `file` (a path under the repository, e.g. src/local/main.ts) compiled, with `args` and `env` added to this process's environment; resolves when it exits. */
export function runTs(file: string, args: string[], env: Record<string, string>): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [compiledPath(file), ...args], {
      env: { ...process.env, ...env },
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
