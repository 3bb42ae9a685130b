/**
 * Starts Azurite's blob service from the npm package as a child process on a free port.
 * In memory for tests, or persisted in a folder (the default for `npm start`).
 */
import { spawn, ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PRELOAD_MARKER } from './azuritePreload';

export { PRELOAD_MARKER };

/** Azurite's well-known development account (public, documented; not a secret). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteOptions {
  /** Folder for persisted data; omit for in-memory storage. */
  location?: string;
  /** Port to listen on; 0 picks a free one. */
  port?: number;
  /** Called with each line Azurite prints (debugging). */
  onLine?: (line: string) => void;
  /**
   * Preload azuritePreload.js into Azurite's process (default true): CPU fixes that leave what
   * Azurite stores and answers unchanged (its lookups stop scanning every blob of the account).
   * False runs Azurite exactly as published, e.g. to compare against.
   */
  tuned?: boolean;
  /** Environment variables added to Azurite's process (e.g. NODE_OPTIONS). */
  env?: Record<string, string>;
}

export interface AzuriteHandle {
  port: number;
  /** Process id of the Azurite child (benchmarks read its CPU time). */
  pid: number | undefined;
  blobEndpoint: string;
  connectionString: string;
  /** Resolves when the Azurite child exits, however it exits (stop() included). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/** How long Azurite may take to listen: generous, since a busy machine is slow, not broken. */
const START_TIMEOUT_MS = 180_000;

export function devConnectionString(port: number): string {
  return `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};BlobEndpoint=http://127.0.0.1:${port}/${DEV_ACCOUNT};`;
}

/** Plain JavaScript (the child runs it as it is); tsc copies it beside this module. */
export function azuritePreloadPath(): string {
  return path.join(__dirname, 'azuritePreload.js');
}

function azuriteBlobMain(): string {
  const pkg = require.resolve('azurite/package.json');
  return path.join(path.dirname(pkg), 'dist', 'src', 'blob', 'main.js');
}

export async function startAzurite(opts: AzuriteOptions = {}): Promise<AzuriteHandle> {
  const args = [
    azuriteBlobMain(),
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(opts.port ?? 0),
    '--disableTelemetry',
    '--skipApiVersionCheck',
    '--silent',
  ];
  if (opts.location !== undefined) {
    mkdirSync(opts.location, { recursive: true });
    args.push('--location', opts.location);
  } else {
    args.push('--inMemoryPersistence');
  }
  // The parent watch always (Azurite ends when this process ends, however it ends), the CPU fixes unless untuned.
  const nodeArgs = [
    '--require',
    path.join(__dirname, 'azuriteParentWatch.js'),
    ...(opts.tuned === false ? [] : ['--require', azuritePreloadPath()]),
  ];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    ...(opts.env !== undefined ? { env: { ...process.env, ...opts.env } } : {}),
  });
  // The channel is only there to close when this process ends: it must not keep this one running.
  child.channel?.unref();
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`Azurite did not start within ${START_TIMEOUT_MS / 1000} s. Output:\n${out}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      out += text;
      for (const line of text.split('\n')) if (line.trim() !== '') opts.onLine?.(line);
      const m = /successfully listens on http:\/\/[\d.]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited with code ${String(code)} before listening. Output:\n${out}`));
    });
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    port,
    pid: child.pid,
    blobEndpoint: `http://127.0.0.1:${port}/${DEV_ACCOUNT}`,
    connectionString: devConnectionString(port),
    exited,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      // Azurite listens on its channel too: once it is closed, Azurite exits when it has shut down.
      if (child.connected) child.disconnect();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface SupervisorEvents {
  /** Azurite died without being asked to and was started again (one line's worth). */
  onRestart?: (e: { oldPid: number | undefined; pid: number | undefined; exit: string; downMs: number }) => void;
  /** A restart failed; the supervisor tries again after `retryInMs`. */
  onRestartFailed?: (err: unknown, retryInMs: number) => void;
}

/**
 * Azurite that is started again when it dies unexpectedly (killed by a signal, out of memory, a
 * non-zero exit code; not when it shuts down cleanly), on the same port and data folder, so the
 * connection string and everything that holds it stay valid. The handle's `pid` is the current
 * child's. Only stop() ends it for good.
 */
export async function superviseAzurite(
  opts: AzuriteOptions = {},
  events: SupervisorEvents = {},
): Promise<AzuriteHandle> {
  let current = await startAzurite(opts);
  const port = current.port;
  let stopping = false;
  const watch = (a: AzuriteHandle): void => {
    void a.exited.then(async ({ code, signal }) => {
      // A clean exit is Azurite's own shutdown (Ctrl-C in a terminal reaches it too): not restarted.
      if (stopping || (signal === null && code === 0)) return;
      const down = performance.now();
      const exit = signal !== null ? `signal ${signal}` : `code ${String(code)}`;
      for (let attempt = 0; !stopping; attempt++) {
        try {
          const next = await startAzurite({ ...opts, port });
          if (stopping) {
            await next.stop();
            return;
          }
          current = next;
          events.onRestart?.({ oldPid: a.pid, pid: next.pid, exit, downMs: Math.round(performance.now() - down) });
          watch(next);
          return;
        } catch (err) {
          const wait = Math.min(500 * 2 ** attempt, 10_000);
          events.onRestartFailed?.(err, wait);
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    });
  };
  watch(current);
  let stoppedWith: (v: { code: number | null; signal: NodeJS.Signals | null }) => void = () => {};
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    stoppedWith = resolve;
  });
  return {
    port,
    get pid() {
      return current.pid;
    },
    blobEndpoint: current.blobEndpoint,
    connectionString: current.connectionString,
    exited,
    async stop() {
      stopping = true;
      await current.stop();
      stoppedWith(await current.exited);
    },
  };
}
