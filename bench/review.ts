/**
 * The review page under a reviewer's hands: label N flagged X-rays (default 50) by keyboard in
 * headless Chromium against the embedded runtime, and time, for each label, from the key press to
 * the next image drawn on the page (bar: 200 ms). The store also holds `--background` other
 * flagged records (default 10,000, less urgent than the X-rays), so the worklist the page pages
 * through is that large; the worklist API's latency at that size is timed too (first request after
 * the listing snapshot expired, and warm). Results go to docs/benchmarks/review.md.
 *
 *   npm run bench:review -- [--count 50] [--background 10000] [--think 300] [--images <folder of radiographs>] [--screenshots <dir>]
 *
 * `--think` is the time (ms) the reviewer looks at an image before pressing the key (default 300,
 * far less than a radiologist takes; 0 presses keys back to back).
 *
 * Images: every .jpeg/.jpg/.png/.dcm under `--images` (searched recursively, taken in name order,
 * repeated when fewer than --count), else four radiographs of test/fixtures/chest-xray. The model is an
 * untrained two-class screening MLP (NORMAL/PNEUMONIA, xray profile at 64 px): what is measured is
 * the page and the runtime, not the model.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { startAzurite } from '@image-triage/local-functions-host';
import { EmbeddedRuntime } from '../src/local/runtime';
import { CONTAINERS, paths } from '../src/storage/layout';
import { promote } from '../src/registry/registry';
import { mapLimit } from '../src/util/mapLimit';
import { reviewPageUrl } from '../src/handlers/reviewPage';
import { LISTING_SHARE, WORKLIST_SNAPSHOT_MS } from '../src/triage/worklist';
import type { KeyInput } from 'puppeteer-core';
import { fixtureRadiographs, launchChromium, saveScreeningModel } from '../test/helpers/reviewPage';

const HEADER = `# Review page benchmark

Written by \`npm run bench:review\` (bench/review.ts): a reviewer labels flagged X-rays by keyboard
in headless Chromium against the embedded runtime; the bar is the next image drawn within 200 ms of
the key. Newest run first.
`;

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function intOpt(name: string, dflt: number, min: number): number {
  const v = Number(opt(name) ?? dflt);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return v;
}

function imagesFrom(dir: string): { name: string; data: Buffer }[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = path.join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(jpe?g|png|dcm)$/i.test(f)) out.push(p);
    }
  };
  walk(dir);
  return out.map((p) => ({ name: path.relative(dir, p).split(path.sep).join('/'), data: readFileSync(p) }));
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [performance.now() - t, r];
}

async function main(): Promise<void> {
  const count = intOpt('count', 50, 1);
  const background = intOpt('background', 10_000, 0);
  const imagesDir = opt('images');
  const shots = opt('screenshots');
  const think = intOpt('think', 300, 0);
  const loadBefore = os.loadavg();
  const source = imagesDir !== undefined ? imagesFrom(imagesDir) : fixtureRadiographs();
  // An even spread over the folder (its class subfolders come one after the other).
  const picked = Array.from(
    { length: count },
    (_, i) => source[Math.floor((i * source.length) / count) % source.length],
  );
  if (picked.length === 0 || picked[0] === undefined) throw new Error('no images');

  const azurite = await startAzurite({});
  const quiet = { info() {}, warn: (m: string) => console.warn(m), error: (m: string) => console.error(m) };
  const config = loadConfig({
    AzureWebJobsStorage: azurite.connectionString,
    TRIAGE_PROFILE: 'xray',
    TRIAGE_XRAY_SIZE: '64',
    TRIAGE_LOCAL_HTTP_PORT: '0',
    TRIAGE_MODEL_REFRESH_MS: '0',
    TRIAGE_REVIEW_AUTH: 'local',
    TRIAGE_LOCAL_REVIEWER: 'bench',
  });
  const rt = await EmbeddedRuntime.start({
    config,
    settings: { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' },
    log: quiet,
  });
  const store = rt.deps.store;
  const browser = await launchChromium();
  try {
    await saveScreeningModel(store, { version: 'bench-screening', size: 64 });
    await promote(store, 'bench-screening', { by: 'bench', reason: 'bench:review' });

    // Neutral names: the data set's file names tell the class.
    const names = picked.map(
      (img, i) => `ward-7/study-${String(i).padStart(3, '0')}${path.extname(img?.name ?? '.jpeg')}`,
    );
    await mapLimit(names, 8, (n, i) => store.put(CONTAINERS.uploads, n, picked[i]?.data ?? Buffer.alloc(0)));
    await rt.waitForIdle(600_000);
    const first = names[0] ?? '';
    const record = await store.get(CONTAINERS.flagged, paths.flagged(first));
    if (record === undefined) throw new Error(`${first} was not flagged`);

    // Background: flagged records that are less urgent than any X-ray (priority 1.0), written directly.
    const t0 = performance.now();
    const bg = Array.from({ length: background }, (_, i) => `backlog/${String(i).padStart(5, '0')}.png`);
    await mapLimit(bg, 16, (n) =>
      store.put(CONTAINERS.flagged, paths.flagged(n), record.data, {
        contentType: 'application/json',
        metadata: { priority: '1.000000', reasons: 'low-confidence', modelversion: 'bench-screening' },
      }),
    );
    const bgSeconds = (performance.now() - t0) / 1000;

    const api = async (q: string) => {
      const r = await fetch(`http://127.0.0.1:${rt.httpPort}/api/worklist?${q}`);
      if (!r.ok) throw new Error(`worklist ${q}: HTTP ${r.status}`);
      return (await r.json()) as { total: number; items: unknown[] };
    };
    const worklist: { what: string; ms: number }[] = [];
    const [coldMs, cold] = await timed(() => api('page=1&pageSize=25'));
    worklist.push({ what: `page 1 of ${cold.total} (listing snapshot taken)`, ms: coldMs });
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) warm.push((await timed(() => api('page=1&pageSize=25')))[0]);
    worklist.push({
      what: 'page 1 again (snapshot reused), median of 5',
      ms: [...warm].sort((a, b) => a - b)[2] ?? NaN,
    });
    const freshFor = Math.max(WORKLIST_SNAPSHOT_MS, LISTING_SHARE * coldMs);
    if (freshFor < 120_000) {
      await new Promise((r) => setTimeout(r, freshFor + 100));
      worklist.push({
        what: `page 1 with the snapshot stale (served while a new listing runs)`,
        ms: (await timed(() => api('page=1&pageSize=25')))[0],
      });
    }
    const deep = Math.max(1, Math.floor(cold.total / 25));
    worklist.push({ what: `page ${deep} (the last)`, ms: (await timed(() => api(`page=${deep}&pageSize=25`)))[0] });
    worklist.push({ what: 'reason=abnormal', ms: (await timed(() => api('page=1&pageSize=25&reason=abnormal')))[0] });
    worklist.push({
      what: 'prefix=ward-7/ (its own listing)',
      ms: (await timed(() => api('page=1&pageSize=25&prefix=ward-7%2F')))[0],
    });

    // The reviewer: open the page, then one key per image.
    const page = await browser.newPage();
    await page.evaluateOnNewDocument(`
      window.__bench = { keys: [], shown: [] };
      document.addEventListener('keydown', () => window.__bench.keys.push(performance.now()), true);
      new MutationObserver(() => {
        const v = document.getElementById('viewer');
        if (v && v.dataset.shownCase) window.__bench.shown.push([performance.now(), v.dataset.shownCase]);
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-shown-case'] });
    `);
    const url = reviewPageUrl(rt.httpPort);
    const [openMs] = await timed(async () => {
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForFunction(`(document.getElementById('viewer').dataset.shownCase || '') !== ''`);
    });
    if (shots !== undefined) {
      mkdirSync(shots, { recursive: true });
      await page.screenshot({ path: path.join(shots, 'worklist.png') });
    }
    const latencies: number[] = [];
    const keys: KeyInput[] = ['p', 'n'];
    for (let i = 0; i < count; i++) {
      const before = (await page.evaluate(`document.getElementById('viewer').dataset.shownCase`)) as string;
      if (think > 0) await new Promise((r) => setTimeout(r, think));
      await page.keyboard.press(keys[i % 2] ?? 'n');
      if (i === count - 1) {
        // The last X-ray: what comes next is the synthetic backlog, which has no image to show (the
        // page says so, which may replace its "Labeled" message): wait for the label blob instead.
        const deadline = Date.now() + 60_000;
        while ((await store.head(CONTAINERS.labels, paths.label(before))) === undefined) {
          if (Date.now() > deadline) throw new Error(`label ${i + 1}: no label blob for ${before} within 60 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
        break;
      }
      await page.waitForFunction(
        `(() => { const s = document.getElementById('viewer').dataset.shownCase; return s !== ${JSON.stringify(before)} && s !== undefined; })()`,
        { timeout: 60_000 },
      );
      const ms = (await page.evaluate(
        `(() => { const b = window.__bench; const k = b.keys[b.keys.length - 1]; const s = b.shown[b.shown.length - 1]; return s === undefined || s[0] < k ? null : s[0] - k; })()`,
      )) as number | null;
      if (ms === null) throw new Error(`label ${i + 1}: no image was drawn after the key press`);
      latencies.push(ms);
      if (i === 1 && shots !== undefined) await page.screenshot({ path: path.join(shots, 'viewer.png') });
    }
    let labeled = 0;
    for (const n of names) if ((await store.head(CONTAINERS.labels, paths.label(n))) !== undefined) labeled++;
    const sorted = [...latencies].sort((a, b) => a - b);
    const over = latencies.filter((l) => l > 200).length;
    const loadAfter = os.loadavg();
    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const uptime = execSync('uptime').toString().trim();
    const shown = process.argv
      .slice(2)
      .map((a, i, all) => (all[i - 1] === '--images' || all[i - 1] === '--screenshots' ? '<folder>' : a));
    const cmd = `npm run bench:review${shown.length > 0 ? ' -- ' + shown.join(' ') : ''}`;
    const lines = [
      `## Run of ${date}`,
      '',
      `Written by \`bench/review.ts\` (\`${cmd}\`) on ${date}; ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')} (\`uptime\`: ${uptime}).`,
      '',
      `Headless Chromium (${await browser.version()}) on the embedded runtime with in-memory Azurite; ${count} flagged X-rays (${imagesDir !== undefined ? 'from the --images folder' : 'the test fixtures, repeated'}) on top of ${background} other flagged records (written in ${bgSeconds.toFixed(1)} s).`,
      '',
      '### Labelling by keyboard: key press to the next image drawn',
      '',
      `| images labeled | p50 | p95 | max | over 200 ms | labels in storage |`,
      `|---|---|---|---|---|---|`,
      `| ${latencies.length} | ${pct(sorted, 50).toFixed(0)} ms | ${pct(sorted, 95).toFixed(0)} ms | ${(sorted[sorted.length - 1] ?? NaN).toFixed(0)} ms | ${over} | ${labeled} |`,
      '',
      `The reviewer looks at each image for ${think} ms before the key (\`--think\`). Opening the page until the first image is drawn: ${openMs.toFixed(0)} ms. The page fetches the record and both images of the next ${4} cases ahead, and the next worklist items when 5 are left.`,
      '',
      `All ${latencies.length} latencies in order (ms): ${latencies.map((l) => l.toFixed(0)).join(', ')}`,
      '',
      `### Worklist API at ${cold.total} flagged (GET /api/worklist, pageSize 25)`,
      '',
      '| request | ms |',
      '|---|---|',
      ...worklist.map((w) => `| ${w.what} | ${w.ms.toFixed(0)} |`),
      '',
      `Each instance keeps a listing snapshot (src/triage/worklist.ts): used as is for ${WORKLIST_SNAPSHOT_MS / 1000} s or ${LISTING_SHARE} times as long as its listing took, then still served while a new listing runs; labels written through the instance count at once. The first request of an instance waits for the listing.`,
      '',
    ];
    const outFile = path.resolve(
      __dirname,
      '..',
      ...(path.basename(path.resolve(__dirname, '..')) === 'dist' ? ['..'] : []),
      'docs',
      'benchmarks',
      'review.md',
    );
    mkdirSync(path.dirname(outFile), { recursive: true });
    // Newest run first; the five latest runs are kept.
    const earlier = existsSync(outFile)
      ? readFileSync(outFile, 'utf8')
          .split(/^(?=## Run of )/m)
          .slice(1, 5)
      : [];
    writeFileSync(outFile, [HEADER, lines.join('\n'), ...earlier].join('\n'));
    console.log(lines.join('\n'));
    console.log(`written to ${outFile}`);
    if (labeled !== count) {
      console.error(`expected ${count} labels, found ${labeled}`);
      process.exitCode = 1;
    }
  } finally {
    await browser.close();
    await rt.stop();
    rt.deps.models.dispose();
    await azurite.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
