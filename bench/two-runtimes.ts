/**
 * Two embedded runtimes on one storage account (`npm run bench:two-runtimes`): N digit PNGs are
 * uploaded from outside while both run (each scans uploads/, the sweep fires every 10 s); counted
 * are the preprocess runs (handler executions, one log line each), the runs skipped because the
 * upload was claimed elsewhere, and the terminal records (exactly one per upload is correct).
 *
 * Peer, in the same invocation: the same with the preprocess trigger calling the handler without
 * a claim (as before claims existed).
 *
 *   --count 1000 --runs 1 --out bench/results/two-runtimes.md
 */
import path from 'node:path';
import type { InvocationContext } from '@azure/functions';
import { loadConfig } from '../src/config';
import { asBuffer, boundName, contextLog } from '../src/handlers/context';
import { handlePreprocess } from '../src/handlers/preprocess';
import type { Log } from '../src/util/log';
import { startAzurite, type LoadedFunction } from '@image-triage/local-functions-host';
import { EmbeddedRuntime, loadFunctionApp } from '../src/local/runtime';
import { projectRoot } from '../src/local/settings';
import { argValue, digitPngs, machine, uptime, writeResults } from './support';
import { BlobStore } from '../src/storage/blobStore';
import { CONTAINERS, uploadNameFromPreprocessed, uploadNameFromRecord } from '../src/storage/layout';
import { mapLimit } from '../src/util/mapLimit';
import { currentDeps } from '../src/composition';

const ROOT = projectRoot();

interface Result {
  claims: boolean;
  uploads: number;
  runs: number;
  skipped: number;
  recordsOk: boolean;
  wrong: number;
  seconds: number;
}

/** The registrations with preprocess calling the handler directly (no claim): the peer. */
function withoutClaims(fns: LoadedFunction[]): LoadedFunction[] {
  return fns.map((f) =>
    f.name !== 'preprocess'
      ? f
      : {
          ...f,
          callback: async (blob: unknown, context: unknown) => {
            const ctx = context as InvocationContext;
            await handlePreprocess({ name: boundName(ctx), data: asBuffer(blob) }, currentDeps(), contextLog(ctx));
          },
        },
  );
}

async function oneRun(files: { name: string; data: Buffer }[], claims: boolean): Promise<Result> {
  const azurite = await startAzurite();
  const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
  await store.ensureContainers();
  const lines: string[] = [];
  const log: Log = {
    info: (m) => void lines.push(m),
    warn: (m) => void lines.push(m),
    error: (m) => void lines.push(m),
  };
  const config = loadConfig({
    AzureWebJobsStorage: azurite.connectionString,
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_LOCAL_CONCURRENCY: '4',
  });
  const settings = { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '*/10 * * * * *' };
  const fns = claims ? loadFunctionApp() : withoutClaims(loadFunctionApp());
  const started = performance.now();
  const a = await EmbeddedRuntime.start({ config, settings, instanceId: 'A', log, functions: fns });
  const b = await EmbeddedRuntime.start({ config, settings, instanceId: 'B', log, functions: fns });
  try {
    await mapLimit(files, 16, async (f) => {
      await store.put(CONTAINERS.uploads, f.name, f.data, { contentType: 'image/png' });
    });
    await Promise.all([a.waitForIdle(1_800_000), b.waitForIdle(1_800_000)]);
    const seconds = (performance.now() - started) / 1000;
    const kinds = new Map<string, number>();
    for await (const e of store.list(CONTAINERS.preprocessed)) {
      const n = uploadNameFromPreprocessed(e.name);
      if (n !== undefined) kinds.set(n, (kinds.get(n) ?? 0) + 1);
    }
    for await (const e of store.list(CONTAINERS.rejected)) {
      const n = uploadNameFromRecord(e.name);
      if (n !== undefined) kinds.set(n, (kinds.get(n) ?? 0) + 1);
    }
    const wrong = files.filter((f) => kinds.get(f.name) !== 1).length;
    return {
      claims,
      uploads: files.length,
      // Every handler run logs one line "preprocess: <name> -> ..." (the sweep's runs included).
      runs: lines.filter((l) => /^(\[preprocess\] )?preprocess: /.test(l)).length,
      skipped: lines.filter((l) => /^(\[preprocess\] )?preprocess skipped: /.test(l)).length,
      recordsOk: wrong === 0 && kinds.size === files.length,
      wrong,
      seconds,
    };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    await azurite.stop();
  }
}

async function main(): Promise<void> {
  const count = Number(argValue('--count', '1000'));
  const runs = Number(argValue('--runs', '1'));
  const out = path.resolve(ROOT, argValue('--out', path.join('bench', 'results', 'two-runtimes.md')));
  const before = uptime();
  const files = await digitPngs(count, 'two');
  const results: Result[] = [];
  for (let r = 0; r < runs; r++) {
    for (const claims of [true, false]) {
      const res = await oneRun(files, claims);
      console.log(JSON.stringify(res));
      results.push(res);
    }
  }
  const after = uptime();
  const section = [
    `## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `Machine: ${machine()}.`,
    `Load (uptime) before: \`${before}\`; after: \`${after}\`.`,
    `\`npm run bench:two-runtimes -- --count ${count} --runs ${runs}\`: two embedded runtimes (concurrency 4 each, sweep every 10 s) on one in-memory Azurite, ${count} digit PNGs uploaded from 16 lanes while both run.`,
    '',
    '| preprocess trigger | uploads | preprocess runs | runs / uploads | skipped (claimed elsewhere) | one terminal record each | uploads with 0 or 2+ records | wall (s) |',
    '|---|---|---|---|---|---|---|---|',
    ...results.map(
      (x) =>
        `| ${x.claims ? 'claims first (this code)' : 'no claim (peer)'} | ${x.uploads} | ${x.runs} | ${(x.runs / x.uploads).toFixed(3)} | ${x.skipped} | ${x.recordsOk ? 'yes' : 'no'} | ${x.wrong} | ${x.seconds.toFixed(0)} |`,
    ),
    '',
  ].join('\n');
  console.log(section);
  writeResults(out, 'Two runtimes on one account', 'bench:two-runtimes', section, ROOT);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
