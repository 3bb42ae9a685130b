/// <reference lib="dom" />
/**
 * The review page in a real browser (Debian's chromium through puppeteer-core) against the
 * embedded runtime and Azurite: a two-class X-ray model, a few flagged radiographs (one of them a
 * 16-bit DICOM, one with HTML in its name), then the worklist order, window/level, labelling by
 * keyboard, undo, keyboard-only use and an axe-core accessibility check. Screenshots go to
 * test-artifacts/review/.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { Browser, Page } from 'puppeteer-core';
import { loadConfig } from '../../../src/config';
import { EmbeddedRuntime } from '../../../src/local/runtime';
import type { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, paths } from '../../../src/storage/layout';
import { promote } from '../../../src/registry/registry';
import type { PredictionRecord } from '../../../src/storage/records/prediction';
import type { LabelRecord } from '../../../src/storage/records/label';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';
import { fixtureRadiographs, launchChromium, saveScreeningModel } from '../../helpers/reviewPage';
import { imageElements, le16, TS, writeDicom } from '../../unit/imaging/fixtures';

const ARTIFACTS = path.resolve(__dirname, '..', '..', '..', 'test-artifacts', 'review');
const HOSTILE = 'ward-3/<img src=x onerror="document.title=1">.jpeg';

/** A 16-bit DICOM of a radiograph (12 bits stored) whose window shows only the middle of its range. */
async function dicomOf(jpeg: Buffer): Promise<Buffer> {
  const { data, info } = await sharp(jpeg).greyscale().raw().toBuffer({ resolveWithObject: true });
  const samples = Array.from(data, (v) => v * 16);
  const els = imageElements({
    rows: info.height,
    cols: info.width,
    bitsAllocated: 16,
    bitsStored: 12,
    extra: [
      [0x0028, 0x1050, 'DS', '2048'],
      [0x0028, 0x1051, 'DS', '3000'],
    ],
  });
  return writeDicom(TS.explicitLE, els, { native: le16(samples) });
}

async function canvasHash(page: Page): Promise<number> {
  return page.evaluate(() => {
    const c = document.getElementById('main-canvas') as HTMLCanvasElement;
    const d = (c.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + (d[i] ?? 0)) >>> 0;
    return h;
  });
}

async function shownCase(page: Page): Promise<string> {
  return page.$eval('#viewer', (e) => (e as HTMLElement).dataset.shownCase ?? '');
}

async function waitShownChange(page: Page, from: string): Promise<string> {
  await page.waitForFunction(
    (prev: string) => {
      const s = (document.getElementById('viewer') as HTMLElement).dataset.shownCase;
      return s !== undefined && s !== '' && s !== prev;
    },
    {},
    from,
  );
  return shownCase(page);
}

/** The label record, once the page's write (which runs behind the next image) has landed. */
async function labelOf(store: BlobStore, name: string): Promise<LabelRecord | undefined> {
  for (let i = 0; i < 600; i++) {
    const l = await store.getJson<LabelRecord>(CONTAINERS.labels, paths.label(name));
    if (l !== undefined) return l.value;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

async function rowNames(page: Page): Promise<string[]> {
  return page.$$eval('#worklist-body tr', (rows) => rows.map((r) => (r as HTMLElement).dataset.upload ?? ''));
}

describe('the review page in a real browser', () => {
  let store: BlobStore;
  let rt: EmbeddedRuntime;
  let browser: Browser;
  let page: Page;
  let base: string;
  const pageErrors: string[] = [];
  const uploads: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    store = await freshStore();
    await saveScreeningModel(store, { version: 'xray-test-1', size: 64 });
    await promote(store, 'xray-test-1', { by: 'test', reason: 'review page test' });
    const config = loadConfig({
      AzureWebJobsStorage: testConnectionString(),
      TRIAGE_PROFILE: 'xray',
      TRIAGE_XRAY_SIZE: '64',
      TRIAGE_LOCAL_POLL_MS: '50',
      TRIAGE_LOCAL_HTTP_PORT: '0',
      TRIAGE_MODEL_REFRESH_MS: '0',
      TRIAGE_REVIEW_AUTH: 'local',
      TRIAGE_LOCAL_REVIEWER: 'dr.test',
    });
    rt = await EmbeddedRuntime.start({
      config,
      settings: { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' },
      log: quietLog,
    });
    const films = fixtureRadiographs();
    for (const f of films) {
      uploads.push(`ward-3/${f.name}`);
      await store.put(CONTAINERS.uploads, `ward-3/${f.name}`, f.data);
    }
    const first = films[0];
    if (first === undefined) throw new Error('no fixture radiographs');
    await store.put(CONTAINERS.uploads, HOSTILE, first.data);
    await store.put(CONTAINERS.uploads, 'ward-4/chest.dcm', await dicomOf(first.data));
    uploads.push(HOSTILE, 'ward-4/chest.dcm');
    await rt.waitForIdle();
    base = `http://127.0.0.1:${rt.httpPort}/api/review/`;
    browser = await launchChromium();
    page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await rt?.stop();
    rt?.deps.models.dispose();
  });

  it('lists every flagged upload in priority order, with the predicted class, reasons and batch, names shown as text', async () => {
    const records = await Promise.all(
      uploads.map(
        async (u) => (await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(u)))?.value,
      ),
    );
    for (const r of records) expect(r?.review.flagged).toBe(true);
    const expected = records
      .map((r) => ({ upload: r?.upload ?? '', priority: r?.review.priority ?? 0 }))
      .sort((a, b) => b.priority - a.priority || (a.upload < b.upload ? -1 : 1))
      .map((r) => r.upload);

    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(
      (n: number) => document.querySelectorAll('#worklist-body tr').length === n,
      {},
      uploads.length,
    );
    expect(await rowNames(page)).toEqual(expected);
    expect(await page.$eval('#remaining', (e) => e.textContent)).toBe(`${uploads.length} images wait for review`);

    const top = records.find((r) => r?.upload === expected[0]);
    const firstRow = await page.$eval('#worklist-body tr', (r) => r.textContent ?? '');
    expect(firstRow).toContain(`${top?.topClass} ${((top?.confidence ?? 0) * 100).toFixed(1)}%`);
    expect(firstRow).toContain(top?.review.reasons[0]);
    // Why it is flagged: the positive class's probability against the card's threshold (0 here).
    expect(top?.threshold).toEqual({ kind: 'screening', positiveClass: 'PNEUMONIA', value: 0 });
    expect(firstRow).toContain(`PNEUMONIA ${(top?.probabilities.PNEUMONIA ?? -1).toFixed(2)} ≥ threshold 0.00`);
    const rules = await page.$$eval('#worklist-body tr .rule', (es) => es.map((e) => e.textContent ?? ''));
    expect(rules).toHaveLength(uploads.length);
    for (const r of rules) expect(r).toMatch(/^PNEUMONIA 0\.\d\d ≥ threshold 0\.00$/);
    expect(firstRow).toMatch(/ward-[34]\//);

    // The name with markup is text: no element came from it, and its handler never ran.
    const hostile = await page.$$eval(
      '#worklist-body tr',
      (rows, name) => rows.filter((r) => (r as HTMLElement).dataset.upload === name).map((r) => r.textContent ?? ''),
      HOSTILE,
    );
    expect(hostile[0]).toContain('<img src=x onerror="document.title=1">.jpeg');
    expect(await page.$$('img[src="x"]')).toHaveLength(0);
    expect(await page.title()).toBe('image-triage review');
    await page.screenshot({ path: path.join(ARTIFACTS, 'worklist.png') });
  });

  it('shows the server-rendered original and the model input; window, level, presets, invert and reset change the pixels', async () => {
    await page.waitForFunction(
      () => ((document.getElementById('viewer') as HTMLElement).dataset.shownCase ?? '') !== '',
    );
    const before = await canvasHash(page);
    await page.keyboard.down('Shift');
    await page.keyboard.press('KeyL');
    await page.keyboard.up('Shift');
    const lung = await canvasHash(page);
    expect(lung).not.toBe(before);
    expect(await page.$eval('#wl', (e) => e.textContent)).toContain('W 160 / L 80');

    const stage = await page.$('#stage');
    const box = await stage?.boundingBox();
    if (box === null || box === undefined) throw new Error('no stage');
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 60, box.y + box.height / 2 - 40, { steps: 4 });
    await page.mouse.up();
    const dragged = await canvasHash(page);
    expect(dragged).not.toBe(lung);
    expect(await page.$eval('#wl', (e) => e.textContent)).toContain('W 220 / L 120');

    await page.click('#invert');
    expect(await canvasHash(page)).not.toBe(dragged);
    await page.click('#reset');
    expect(await canvasHash(page)).toBe(before);

    // Quality warnings and the model version are on the page; the side image is the model input.
    const facts = await page.$eval('.case', (e) => e.textContent ?? '');
    expect(facts).toContain('xray-test-1');
    const shown = (
      await store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(await shownCase(page)))
    )?.value;
    expect(await page.$eval('#prediction dd.rule', (e) => e.textContent)).toBe(
      `PNEUMONIA ${(shown?.probabilities.PNEUMONIA ?? -1).toFixed(2)} ≥ threshold 0.00`,
    );
    expect(facts).toMatch(/Quality/);
    const side = await page.$eval('#side-image', (e) => ({
      w: (e as HTMLImageElement).naturalWidth,
      src: (e as HTMLImageElement).src,
    }));
    expect(side.w).toBe(64);
    expect(side.src).toContain('view=input');
    await page.screenshot({ path: path.join(ARTIFACTS, 'viewer.png') });
  });

  it('renders a DICOM upload as a PNG through its own window, never the DICOM bytes', async () => {
    const res = await fetch(`${base}images/ward-4/chest.dcm?view=original`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    const png = Buffer.from(await res.arrayBuffer());
    expect(png.includes(Buffer.from('DICM'))).toBe(false);
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    // Window 2048 +- 1500 over values 0..4080: the darkest and brightest parts are clipped.
    let min = 255;
    let max = 0;
    for (const v of data) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(min).toBe(0);
    expect(max).toBe(255);
  });

  it('labels two images by keyboard through the labels API, takes them off the worklist, and undoes the last', async () => {
    await page.click('#case-title');
    const c1 = await shownCase(page);
    await page.keyboard.press('p');
    const c2 = await waitShownChange(page, c1);
    await page.keyboard.press('n');
    const c3 = await waitShownChange(page, c2);
    expect(new Set([c1, c2, c3]).size).toBe(3);

    const l1 = await labelOf(store, c1);
    const l2 = await labelOf(store, c2);
    expect(l1).toMatchObject({ upload: c1, class: 'PNEUMONIA', labeledBy: 'dr.test', history: [] });
    expect(l2).toMatchObject({ upload: c2, class: 'NORMAL', labeledBy: 'dr.test' });
    expect(l1?.prediction?.modelVersion).toBe('xray-test-1');

    const rows = await rowNames(page);
    expect(rows).not.toContain(c1);
    expect(rows).not.toContain(c2);
    const api = (await (await fetch(`http://127.0.0.1:${rt.httpPort}/api/worklist?pageSize=500`)).json()) as {
      items: { upload: string }[];
      total: number;
    };
    expect(api.items.map((i) => i.upload)).not.toContain(c1);
    expect(api.items.map((i) => i.upload)).not.toContain(c2);
    expect(api.total).toBe(uploads.length - 2);
    expect(await page.$eval('#remaining', (e) => e.textContent)).toBe(`${uploads.length - 2} images wait for review`);

    await page.keyboard.down('Control');
    await page.keyboard.press('z');
    await page.keyboard.up('Control');
    await page.waitForFunction(
      (name: string) => (document.getElementById('viewer') as HTMLElement).dataset.shownCase === name,
      {},
      c2,
    );
    expect(await store.head(CONTAINERS.labels, paths.label(c2))).toBeUndefined();
    expect((await store.getJson<LabelRecord>(CONTAINERS.labels, paths.label(c1)))?.value.class).toBe('PNEUMONIA');
    expect(await rowNames(page)).toContain(c2);
    expect(await page.$eval('#remaining', (e) => e.textContent)).toBe(`${uploads.length - 1} images wait for review`);
  });

  it('works from the keyboard alone: Tab reaches a worklist entry, Enter opens it, a key labels it', async () => {
    const p2 = await browser.newPage();
    await p2.goto(base, { waitUntil: 'load' });
    await p2.waitForFunction(() => ((document.getElementById('viewer') as HTMLElement).dataset.shownCase ?? '') !== '');
    const names = await rowNames(p2);
    let focused = '';
    for (let i = 0; i < 40 && focused !== names[1]; i++) {
      await p2.keyboard.press('Tab');
      focused = await p2.evaluate(
        () => (document.activeElement?.closest('tr') as HTMLElement | null)?.dataset.upload ?? '',
      );
    }
    expect(focused).toBe(names[1]);
    await p2.keyboard.press('Enter');
    await p2.waitForFunction(
      (n: string) => (document.getElementById('viewer') as HTMLElement).dataset.shownCase === n,
      {},
      names[1] ?? '',
    );
    await p2.keyboard.press('n');
    await waitShownChange(p2, names[1] ?? '');
    expect((await labelOf(store, names[1] ?? ''))?.class).toBe('NORMAL');
    await p2.close();
  });

  it('shows the status panel: counts, the promoted model with its card figures, retraining runs', async () => {
    await page.click('#status-panel summary');
    await page.waitForSelector('#status-body .status-grid');
    const text = await page.$eval('#status-body', (e) => e.textContent ?? '');
    expect(text).toContain('xray-test-1');
    expect(text).toMatch(/flagged\s*6/);
    expect(text).toContain('Recent retraining runs');
    expect(await page.$eval('#retrain', (e) => e.textContent)).toBe('Retrain now');
  });

  it('has no serious or critical accessibility violation (axe-core)', async () => {
    // Evaluated through the DevTools protocol: the page's Content-Security-Policy allows no inline script.
    await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
    const violations = await page.evaluate(async () => {
      const axe = (
        window as unknown as {
          axe: {
            run: (ctx: Document) => Promise<{ violations: { id: string; impact: string | null; nodes: unknown[] }[] }>;
          };
        }
      ).axe;
      const r = await axe.run(document);
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
    });
    expect(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')).toEqual([]);
  });

  it('refuses writes without the page header and names that are not image names, and logged no page error', async () => {
    const post = (p: string, headers: Record<string, string>) =>
      fetch(`${base}${p}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: '{"class":"NORMAL"}',
      });
    expect((await post(`labels/${uploads[0] ?? ''}`, {})).status).toBe(403);
    expect((await post('labels/ward-3%2F..%2Fx.jpeg', { 'x-triage-review': '1' })).status).toBe(400);
    expect((await fetch(`${base}images/ward-3%5Cx.jpeg`)).status).toBe(400);
    expect((await fetch(`${base}assets/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${base}images/%E0%A4%A.jpeg`)).status).toBe(400); // a malformed percent-encoding
    expect((await fetch(`${base}me`)).status).toBe(200);
    expect(pageErrors).toEqual([]);
  });
});
