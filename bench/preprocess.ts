/**
 * Preprocessing throughput and peak RSS, with sharp's plain decode of the same bytes as the peer
 * measured in the same run (absolute times vary between machines; the ratio is what to compare).
 *
 *   npm run build && node dist/bench/preprocess.js          (about 40 s on 2 cores)
 *
 * Each (case, side) runs in a fresh child process so that its peak RSS is its own; peer and ours
 * alternate twice and the better run of each is kept. For the DICOM case sharp cannot read the
 * bytes, so the peer decodes a 16-bit PNG of the same 2048x2048 pixels.
 */
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { preprocessImage, PreprocessOptions } from '../src/imaging';

type CaseName = 'png28-mnist' | 'png1024-mnist' | 'png1024-xray' | 'dicom2048-xray';
const CASES: CaseName[] = ['png28-mnist', 'png1024-mnist', 'png1024-xray', 'dicom2048-xray'];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2.5);

/** A digit-like pattern: a thick ring on white, with mild noise. */
function drawing(n: number): Uint8Array {
  const px = new Uint8Array(n * n);
  let seed = 1;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const r = Math.hypot(x - n * 0.45, y - n * 0.5) / n;
      const ink = Math.abs(r - 0.25) < 0.05;
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      px[y * n + x] = Math.max(0, Math.min(255, (ink ? 20 : 235) + ((seed >> 16) % 16) - 8));
    }
  }
  return px;
}

/** 2048x2048 CT-like 16-bit signed values (HU + 1024 stored), explicit VR little endian. */
function ctValues(n: number): Int16Array {
  const v = new Int16Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const r = Math.hypot(x - n / 2, y - n / 2) / n;
      v[y * n + x] = (r < 0.4 ? 40 + Math.round(200 * Math.sin(x / 37) * Math.cos(y / 53)) : -1000) + 1024;
    }
  }
  return v;
}

function dicomExplicitLE(rows: number, cols: number, pixels: Int16Array): Buffer {
  const el = (g: number, e: number, vr: string, value: Buffer): Buffer => {
    const long = vr === 'OB' || vr === 'OW';
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(g, 0);
    h.writeUInt16LE(e, 2);
    h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(value.length, 8);
    else h.writeUInt16LE(value.length, 6);
    return Buffer.concat([h, value]);
  };
  const s = (t: string, pad = ' '): Buffer => Buffer.from(t.length % 2 ? t + pad : t, 'latin1');
  const us = (x: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(x);
    return b;
  };
  const metaBody = Buffer.concat([
    el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    el(0x0002, 0x0010, 'UI', s('1.2.840.10008.1.2.1', '\0')),
  ]);
  const gl = Buffer.alloc(4);
  gl.writeUInt32LE(metaBody.length);
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from('DICM', 'latin1'),
    el(0x0002, 0x0000, 'UL', gl),
    metaBody,
    el(0x0008, 0x0060, 'CS', s('CT')),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', s('MONOCHROME2')),
    el(0x0028, 0x0010, 'US', us(rows)),
    el(0x0028, 0x0011, 'US', us(cols)),
    el(0x0028, 0x0100, 'US', us(16)),
    el(0x0028, 0x0101, 'US', us(16)),
    el(0x0028, 0x0102, 'US', us(15)),
    el(0x0028, 0x0103, 'US', us(1)),
    el(0x0028, 0x1050, 'DS', s('40')),
    el(0x0028, 0x1051, 'DS', s('400')),
    el(0x0028, 0x1052, 'DS', s('-1024')),
    el(0x0028, 0x1053, 'DS', s('1')),
    el(0x7fe0, 0x0010, 'OW', Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)),
  ]);
}

/** Input bytes for ours, and for the peer (the same bytes, except DICOM: a 16-bit PNG of the same pixels). */
async function inputs(c: CaseName): Promise<{ ours: Buffer; peer: Buffer; opts: PreprocessOptions }> {
  const base = { xraySize: 224, maxInputBytes: 64 * 1024 * 1024, maxPixels: 50_000_000 };
  if (c === 'png28-mnist' || c === 'png1024-mnist' || c === 'png1024-xray') {
    const n = c === 'png28-mnist' ? 28 : 1024;
    const png = await sharp(Buffer.from(drawing(n)), { raw: { width: n, height: n, channels: 1 } })
      .png()
      .toBuffer();
    return { ours: png, peer: png, opts: { ...base, profile: c.endsWith('mnist') ? 'mnist' : 'xray' } };
  }
  const n = 2048;
  const v = ctValues(n);
  const png16 = await sharp(
    Uint16Array.from(v, (x) => x & 0xffff),
    { raw: { width: n, height: n, channels: 1 } },
  )
    .toColourspace('grey16')
    .png({ compressionLevel: 1 })
    .toBuffer();
  return { ours: dicomExplicitLE(n, n, v), peer: png16, opts: { ...base, profile: 'xray' } };
}

async function child(c: CaseName, side: 'ours' | 'peer'): Promise<void> {
  const { ours, peer, opts } = await inputs(c);
  const run = side === 'ours' ? () => preprocessImage(ours, opts) : () => sharp(peer).raw().toBuffer();
  for (let i = 0; i < 3; i++) await run(); // warm-up (codec/module init, JIT)
  let count = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < SECONDS) {
    await run();
    count++;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  const bytes = side === 'ours' ? ours.length : peer.length;
  process.stdout.write(
    JSON.stringify({ perSecond: count / elapsed, count, peakRssMB: process.resourceUsage().maxRSS / 1024, bytes }) +
      '\n',
  );
}

interface Sample {
  perSecond: number;
  count: number;
  peakRssMB: number;
  bytes: number;
}

function measure(c: CaseName, side: 'ours' | 'peer'): Sample {
  const r = spawnSync(process.execPath, [__filename, '--child', c, side], {
    encoding: 'utf8',
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '4' },
  });
  if (r.status !== 0) throw new Error(`bench child ${c}/${side} failed: ${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Sample;
}

function main(): void {
  console.log(
    'command: npm run build && node dist/bench/preprocess.js' +
      (process.env.BENCH_SECONDS ? ` (BENCH_SECONDS=${SECONDS})` : ''),
  );
  console.log(
    `node ${process.version}, sharp ${sharp.versions.sharp} / libvips ${sharp.versions.vips}, ${SECONDS}s per run, best of 2 alternating runs\n`,
  );
  const rows: string[][] = [
    ['case', 'input', 'ours img/s', 'peer img/s', 'ours time / peer time', 'ours peak RSS', 'peer peak RSS'],
  ];
  for (const c of CASES) {
    let best: Record<'ours' | 'peer', Sample | undefined> = { ours: undefined, peer: undefined };
    for (let round = 0; round < 2; round++) {
      for (const side of ['peer', 'ours'] as const) {
        const s = measure(c, side);
        const prev = best[side];
        best = { ...best, [side]: !prev || s.perSecond > prev.perSecond ? s : prev };
      }
    }
    const o = best.ours as Sample;
    const p = best.peer as Sample;
    rows.push([
      c,
      `${(o.bytes / 1024).toFixed(0)} KiB${c.startsWith('dicom') ? ` (peer: 16-bit PNG ${(p.bytes / 1024).toFixed(0)} KiB)` : ''}`,
      o.perSecond.toFixed(1),
      p.perSecond.toFixed(1),
      (p.perSecond / o.perSecond).toFixed(2) + 'x',
      `${o.peakRssMB.toFixed(0)} MB`,
      `${p.peakRssMB.toFixed(0)} MB`,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  '));
  console.log(
    '\nratio > 1: preprocessing one image takes that many times as long as sharp decoding the same bytes to raw pixels.',
  );
}

if (process.argv[2] === '--child') {
  child(process.argv[3] as CaseName, process.argv[4] as 'ours' | 'peer').catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main();
}
