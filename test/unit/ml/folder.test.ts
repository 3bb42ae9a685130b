import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSamples } from '../../../src/cli/samples';
import { loadImageFolder } from '../../../src/ml/data/folder';

describe('image folder data set', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ml-folder-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('preprocesses <class>/<file> images with the mnist profile, skipping rejected files', async () => {
    // Scanned-looking digits: dark ink on white paper, 56 px; the mnist profile inverts and centres them.
    const files = await writeSamples(dir, { count: 40, size: 56, inkOnWhite: true });
    writeFileSync(join(dir, '3', 'notes.txt'), 'not an image');
    let progress = 0;
    const d = await loadImageFolder(dir, { testFraction: 0.25, onProgress: (done) => (progress = done) });
    expect(progress).toBe(files.length + 1);
    expect(d.report.loaded).toBe(files.length);
    expect(d.report.skipped).toEqual([{ name: '3/notes.txt', reason: expect.any(String) }]);
    expect(d.train.shape).toEqual([28, 28, 1]);
    expect(d.train.labels.length + d.test.labels.length).toBe(files.length);
    // Class names come from the subfolders, in numeric order; each name's folder is its label.
    const names = d.train.names ?? [];
    names.forEach((n, i) => expect(d.train.classNames[d.train.labels[i] as number]).toBe(n.split('/')[0]));
    // White digit on black, as the models are trained: the border is dark, some pixels are bright.
    const img = d.train.images.subarray(0, 784);
    const corner = (img[0] as number) + (img[27] as number) + (img[783] as number);
    expect(corner).toBeLessThan(0.3);
    expect(Math.max(...img)).toBeGreaterThan(0.8);
  });
});
