/**
 * Azurite killed mid-batch (`npm run bench:azurite-kill`): each run starts Azurite on a fresh data
 * folder under the supervisor `npm start` uses, and the embedded runtime on it; uploads a batch of
 * digit PNGs from 8 lanes (a refused upload is sent again), SIGKILLs Azurite once a share of the
 * batch is acknowledged, lets the supervisor restart it, finishes the batch, waits for the runtime
 * to be idle and counts the acknowledged uploads (the uploader got a 201) that have no blob or no
 * terminal record afterwards.
 *
 * Peer, in the same invocation: the same runs on Azurite as published (`tuned: false`: no
 * @image-triage/local-functions-host's azuritePreload.js, so it acknowledges before its metadata is saved).
 *
 *   --runs 5 --peer-runs 2 --count 600 --out bench/results/azurite-kill.md
 *
 * Appends this run (date, machine, `uptime` before and after) to the results file, newest first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { superviseAzurite } from '@image-triage/local-functions-host';
import { EmbeddedRuntime } from '../src/local/runtime';
import { projectRoot } from '../src/local/settings';
import { argValue, digitPngs, machine, uptime, writeResults } from './support';
import { BlobStore, isUnreachable } from '../src/storage/blobStore';
import { CONTAINERS, paths } from '../src/storage/layout';

const ROOT = projectRoot();

interface RunResult {
  azurite: 'project (acknowledges what is saved)' | 'as published (peer)';
  count: number;
  killedAfter: number;
  acknowledged: number;
  refused: number;
  lostUploads: number;
  withoutRecord: number;
  restartMs: number;
  ackPerSecond: number;
  seconds: number;
}

async function oneRun(files: { name: string; data: Buffer }[], killShare: number, tuned: boolean): Promise<RunResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'triage-bench-azurite-kill-'));
  const started = performance.now();
  const restarts: { downMs: number }[] = [];
  const azurite = await superviseAzurite({ location: dir, tuned }, { onRestart: (e) => restarts.push(e) });
  const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: azurite.connectionString });
  await store.ensureContainers();
  // Past Azurite's autosave interval (5 s): the peer would otherwise lose the containers themselves.
  await new Promise((r) => setTimeout(r, 6000));
  const config = loadConfig({
    AzureWebJobsStorage: azurite.connectionString,
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_LOCAL_CONCURRENCY: '4',
  });
  const rt = await EmbeddedRuntime.start({
    config,
    settings: { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' },
    log: { info() {}, warn() {}, error() {} },
  });
  try {
    const acknowledged = new Set<string>();
    let refused = 0;
    let next = 0;
    const t0 = performance.now();
    let ackRate = 0;
    const uploading = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < files.length) {
          const f = files[next++] as { name: string; data: Buffer };
          for (;;) {
            try {
              await store.put(CONTAINERS.uploads, f.name, f.data, { contentType: 'image/png' });
              acknowledged.add(f.name);
              break;
            } catch (err) {
              if (!isUnreachable(err)) throw err;
              refused++;
              await new Promise((r) => setTimeout(r, 200));
            }
          }
        }
      }),
    );
    const killAt = Math.round(files.length * killShare);
    while (acknowledged.size < killAt) await new Promise((r) => setTimeout(r, 2));
    ackRate = acknowledged.size / ((performance.now() - t0) / 1000);
    const killedAfter = acknowledged.size;
    process.kill(azurite.pid ?? 0, 'SIGKILL');
    await uploading;
    await rt.waitForIdle(1_800_000);
    let lostUploads = 0;
    let withoutRecord = 0;
    for (const name of acknowledged) {
      if ((await store.head(CONTAINERS.uploads, name)) === undefined) lostUploads++;
      const pre = await store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
      const rej = await store.head(CONTAINERS.rejected, paths.rejected(name));
      if (pre === undefined && rej === undefined) withoutRecord++;
    }
    return {
      azurite: tuned ? 'project (acknowledges what is saved)' : 'as published (peer)',
      count: files.length,
      killedAfter,
      acknowledged: acknowledged.size,
      refused,
      lostUploads,
      withoutRecord,
      restartMs: restarts[0]?.downMs ?? NaN,
      ackPerSecond: ackRate,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await rt.stop();
    await azurite.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runs = Number(argValue('--runs', '5'));
  const peerRuns = Number(argValue('--peer-runs', '2'));
  const count = Number(argValue('--count', '600'));
  const out = path.resolve(ROOT, argValue('--out', path.join('bench', 'results', 'azurite-kill.md')));
  const before = uptime();
  const files = await digitPngs(count, 'kill');
  const shares = [0.3, 0.45, 0.6, 0.35, 0.5];
  const results: RunResult[] = [];
  for (let r = 0; r < Math.max(runs, peerRuns); r++) {
    const share = shares[r % shares.length] as number;
    for (const tuned of [true, false]) {
      if ((tuned && r >= runs) || (!tuned && r >= peerRuns)) continue;
      const res = await oneRun(files, share, tuned);
      console.log(JSON.stringify(res));
      results.push(res);
    }
  }
  const after = uptime();
  const row = (x: RunResult) =>
    `| ${x.azurite} | ${x.count} | ${x.killedAfter} | ${x.acknowledged} | ${x.refused} | ${x.lostUploads} | ${x.withoutRecord} | ${Math.round(x.restartMs)} | ${x.ackPerSecond.toFixed(0)} | ${x.seconds.toFixed(0)} |`;
  const total = (tuned: boolean, k: 'lostUploads' | 'withoutRecord') =>
    results.filter((x) => x.azurite.startsWith('project') === tuned).reduce((s, x) => s + x[k], 0);
  const section = [
    `## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `Machine: ${machine()}.`,
    `Load (uptime) before: \`${before}\`; after: \`${after}\`.`,
    `\`npm run bench:azurite-kill -- --runs ${runs} --peer-runs ${peerRuns} --count ${count}\`: per run a fresh data folder, ${count} digit PNGs from 8 lanes, SIGKILL of Azurite once the share of the batch in "killed after" was acknowledged, the supervisor's restart, the rest of the batch, then the runtime idle.`,
    '',
    '| Azurite | uploads | killed after (acks) | acknowledged | refused while down | acknowledged, blob lost | acknowledged, no record | restart (ms) | acks/s before the kill | run (s) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(row),
    '',
    `Acknowledged uploads lost: ${total(true, 'lostUploads')} in ${runs} runs of the project's Azurite (without a record: ${total(true, 'withoutRecord')}); ${total(false, 'lostUploads')} in ${peerRuns} runs of Azurite as published (without a record: ${total(false, 'withoutRecord')}).`,
    '',
  ].join('\n');
  console.log(section);
  writeResults(out, 'Azurite killed mid-batch', 'bench:azurite-kill', section, ROOT);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
