/**
 * The PNG fast path (src/imaging/png.ts) against the sharp path: bit-identical grey values, source
 * and warnings wherever it is taken, and `undefined` (sharp decodes) for everything it must not take.
 */
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { PngOptions, Sharp } from 'sharp';
import { ImageRejection, PreprocessOptions, preprocessImage } from '../../../src/imaging';
import { decodePlainPng } from '../../../src/imaging/png';
import { DecodedRaster, decodeRaster, setPngFastPathForTests } from '../../../src/imaging/raster';
import { OPTS, XRAY, drawSeven, grayPng } from './fixtures';

const MAX_PIXELS = OPTS.maxPixels;
type Reduce = Parameters<typeof decodePlainPng>[2];

// ---- a small PNG encoder with explicit filter types

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as const;

/** Length, type, data, CRC-32 of type and data. */
function chunk(type: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(typed.length + 8);
  out.writeUInt32BE(data.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE(crc32(typed), typed.length + 4);
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  bitDepth?: number;
  colourType?: keyof typeof CHANNELS;
  /** Interleaved samples; default a pseudo-random pattern. */
  samples?: ArrayLike<number>;
  /** Filter type of row y: filters[y % filters.length]. */
  filters?: number[];
  interlace?: number;
  /** Chunks between IHDR and IDAT, and between IDAT and IEND. */
  before?: Buffer[];
  after?: Buffer[];
  /** Number of IDAT chunks the zlib stream is split into. */
  idats?: number;
  /** Replaces the zlib stream of the filtered rows. */
  zlib?: (filtered: Buffer) => Buffer;
}

function pattern(n: number, max: number, seed = 1): number[] {
  let s = seed;
  // High bits of an LCG: its low bits have short periods.
  return Array.from({ length: n }, () => Math.floor(((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * (max + 1)));
}

function filterRow(type: number, cur: Buffer, prev: Buffer | undefined, bpp: number): Buffer {
  const out = Buffer.alloc(cur.length + 1);
  out[0] = type;
  for (let i = 0; i < cur.length; i++) {
    const a = i >= bpp ? (cur[i - bpp] ?? 0) : 0;
    const b = prev?.[i] ?? 0;
    const c = i >= bpp ? (prev?.[i - bpp] ?? 0) : 0;
    const p = a + b - c;
    const paeth =
      Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
        ? a
        : Math.abs(p - b) <= Math.abs(p - c)
          ? b
          : c;
    const pred = [0, a, b, (a + b) >> 1, paeth][type] ?? 0;
    out[i + 1] = ((cur[i] ?? 0) - pred) & 0xff;
  }
  return out;
}

function encodePng(spec: PngSpec): Buffer {
  const {
    width,
    height,
    bitDepth = 8,
    colourType = 0,
    filters = [0],
    interlace = 0,
    before = [],
    after = [],
    idats = 1,
  } = spec;
  const channels = CHANNELS[colourType];
  const samples = spec.samples ?? pattern(width * height * channels, 2 ** bitDepth - 1);
  const rowBytes = Math.ceil((width * channels * bitDepth) / 8);
  const bpp = Math.max(1, (channels * bitDepth) / 8);
  const rows: Buffer[] = [];
  let prev: Buffer | undefined;
  for (let y = 0; y < height; y++) {
    const cur = Buffer.alloc(rowBytes);
    for (let i = 0; i < width * channels; i++) {
      const v = samples[y * width * channels + i] ?? 0;
      if (bitDepth === 16) cur.writeUInt16BE(v, 2 * i);
      else if (bitDepth === 8) cur[i] = v;
      else cur[(i * bitDepth) >> 3] = (cur[(i * bitDepth) >> 3] ?? 0) | (v << (8 - bitDepth - ((i * bitDepth) & 7)));
    }
    rows.push(filterRow(filters[y % filters.length] ?? 0, cur, prev, bpp));
    prev = cur;
  }
  const filtered = Buffer.concat(rows);
  const stream = spec.zlib ? spec.zlib(filtered) : deflateSync(filtered);
  const parts: Buffer[] = [];
  const size = Math.ceil(stream.length / idats);
  for (let k = 0; k < idats; k++) parts.push(chunk('IDAT', stream.subarray(k * size, (k + 1) * size)));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  ihdr[12] = interlace;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...before,
    ...parts,
    ...after,
    chunk('IEND'),
  ]);
}

/** Grey+alpha / RGB samples with R = G = B from grey values (and alpha values). */
function neutral(grey: number[], alpha?: number[]): number[] {
  return grey.flatMap((v, i) => (alpha ? [v, v, v, alpha[i] ?? 0] : [v, v, v]));
}

// ---- comparisons

async function withoutFastPath<T>(run: () => Promise<T>): Promise<T> {
  setPngFastPathForTests(false);
  try {
    return await run();
  } finally {
    setPngFastPathForTests(true);
  }
}

/** Index of the first pixel whose float bits differ, or -1 (lengths must match too). */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function expectIdentical(fast: DecodedRaster, slow: DecodedRaster): void {
  expect(fast.source).toEqual(slow.source);
  expect(fast.warnings).toEqual(slow.warnings);
  expect([fast.image.width, fast.image.height]).toEqual([slow.image.width, slow.image.height]);
  expect(firstDifference(fast.image.data, slow.image.data)).toBe(-1);
}

/** The fast path is taken and gives exactly what sharp gives. */
async function expectFastAndIdentical(bytes: Buffer, reduceTo?: Reduce): Promise<DecodedRaster> {
  expect(decodePlainPng(bytes, MAX_PIXELS, reduceTo)).toBeDefined();
  const fast = await decodeRaster(bytes, 'png', MAX_PIXELS, reduceTo);
  const slow = await withoutFastPath(() => decodeRaster(bytes, 'png', MAX_PIXELS, reduceTo));
  expectIdentical(fast, slow);
  return fast;
}

function greySharp(px: Uint8Array | Uint16Array, w: number, h: number): Sharp {
  return px instanceof Uint16Array
    ? sharp(px, { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16')
    : sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w');
}

const colourType = (png: Buffer): number => png[25] ?? -1;

describe('PNG fast path gives exactly what sharp gives', () => {
  const seven = drawSeven(29);
  const seven16 = Uint16Array.from(seven, (v, i) => v * 257 + (i % 251));

  it.each([
    ['defaults', {}],
    ['compressionLevel 0', { compressionLevel: 0 }],
    ['compressionLevel 1, no adaptive filtering', { compressionLevel: 1, adaptiveFiltering: false }],
    ['compressionLevel 9, adaptive filtering', { compressionLevel: 9, adaptiveFiltering: true }],
  ] as [string, PngOptions][])('sharp-encoded 8- and 16-bit grey, %s', async (_name, options) => {
    for (const [w, h] of [
      [1, 1],
      [1, 29],
      [3, 7],
      [29, 29],
    ] as const) {
      const px8 = seven.subarray(0, w * h);
      const g8 = await greySharp(px8, w, h).png(options).toBuffer();
      const g16 = await greySharp(seven16.subarray(0, w * h), w, h)
        .png(options)
        .toBuffer();
      expect([colourType(g8), g8[24], colourType(g16), g16[24]]).toEqual([0, 8, 0, 16]);
      await expectFastAndIdentical(g8);
      await expectFastAndIdentical(g16);
    }
  });

  it('sharp-encoded neutral RGB (what sharp writes for 1-channel raw input) and RGBA', async () => {
    const rgb = await grayPng(seven, 29, 29);
    expect(colourType(rgb)).toBe(2);
    const r = await expectFastAndIdentical(rgb);
    expect(r.source).toEqual({ format: 'png', width: 29, height: 29, bitsPerSample: 8, channels: 3 });
    const rgba = Buffer.alloc(29 * 29 * 4);
    for (let i = 0; i < 29 * 29; i++) rgba[i * 4 + 3] = 255 - (seven[i] ?? 0);
    const withAlpha = await sharp(rgba, { raw: { width: 29, height: 29, channels: 4 } })
      .png()
      .toBuffer();
    expect(colourType(withAlpha)).toBe(6);
    expect((await expectFastAndIdentical(withAlpha)).warnings).toEqual(['alpha-flattened-on-white']);
  });

  it.each([0, 1, 2, 3, 4])(
    'hand-made grey with filter type %i on every row, 8 and 16 bit, widths 1, 3, 29',
    async (filter) => {
      for (const width of [1, 3, 29]) {
        for (const bitDepth of [8, 16]) {
          // Full-range values, and values 0..3 (many equal neighbours: Paeth ties).
          for (const max of [2 ** bitDepth - 1, 3])
            await expectFastAndIdentical(
              encodePng({ width, height: 6, bitDepth, samples: pattern(width * 6, max), filters: [filter] }),
            );
        }
      }
    },
  );

  it.each([
    ['grey', 0, (n: number, max: number) => pattern(n, max)],
    ['grey+alpha', 4, (n: number, max: number) => pattern(2 * n, max, 7)],
    ['neutral RGB', 2, (n: number, max: number) => neutral(pattern(n, max))],
    ['RGBA', 6, (n: number, max: number) => pattern(4 * n, max, 3)],
    ['neutral RGBA', 6, (n: number, max: number) => neutral(pattern(n, max), pattern(n, max, 5))],
  ] as const)('hand-made %s, 8 and 16 bit, all filter types mixed, widths 1, 3, 29', async (_name, type, samples) => {
    for (const width of [1, 3, 29]) {
      for (const bitDepth of [8, 16]) {
        const png = encodePng({
          width,
          height: 11,
          bitDepth,
          colourType: type,
          samples: samples(width * 11, 2 ** bitDepth - 1),
          filters: [4, 0, 3, 1, 2, 4, 3],
        });
        await expectFastAndIdentical(png);
      }
    }
  });

  it('light ink on transparency (flattened onto black) and fully opaque alpha', async () => {
    const n = 29 * 29;
    const light = encodePng({
      width: 29,
      height: 29,
      colourType: 4,
      samples: Array.from(seven).flatMap((v) => [255, 255 - v]),
      filters: [1, 4],
    });
    expect((await expectFastAndIdentical(light)).warnings).toEqual(['alpha-flattened-on-black']);
    const opaque = encodePng({
      width: 29,
      height: 29,
      colourType: 6,
      bitDepth: 16,
      samples: neutral(pattern(n, 65535), new Array<number>(n).fill(65535)),
    });
    expect((await expectFastAndIdentical(opaque)).warnings).toEqual([]);
  });

  it('1x1, several IDAT chunks (one empty), harmless ancillary chunks', async () => {
    await expectFastAndIdentical(encodePng({ width: 1, height: 1 }));
    await expectFastAndIdentical(encodePng({ width: 1, height: 1, bitDepth: 16 }));
    await expectFastAndIdentical(encodePng({ width: 29, height: 29, idats: 5, filters: [0, 1, 2, 3, 4] }));
    await expectFastAndIdentical(encodePng({ width: 29, height: 29, idats: 3, after: [chunk('IDAT')] }));
    const pHYs = chunk('pHYs', Buffer.from([0, 0, 11, 19, 0, 0, 11, 19, 1]));
    const tIME = chunk('tIME', Buffer.from([7, 233, 1, 2, 3, 4, 5]));
    const tEXt = chunk('tEXt', Buffer.from('Software\0test', 'latin1'));
    await expectFastAndIdentical(encodePng({ width: 29, height: 29, before: [pHYs, tEXt], after: [tIME, tEXt] }));
  });

  it('reduceTo that does not reduce keeps the fast path', async () => {
    const png = encodePng({ width: 29, height: 17 });
    await expectFastAndIdentical(png, () => undefined);
    await expectFastAndIdentical(png, (w, h) => ({ width: w, height: h }));
    await expectFastAndIdentical(png, (w, h) => ({ width: 2 * w, height: 2 * h }));
  });
});

describe('PNG fast path leaves to sharp', () => {
  const png = (spec: Partial<PngSpec> = {}): Buffer => encodePng({ width: 29, height: 17, ...spec });
  const grey = (n: number): number[] => pattern(n, 255);
  const fastPath = (bytes: Buffer, maxPixels = MAX_PIXELS, reduceTo?: Reduce): unknown =>
    decodePlainPng(bytes, maxPixels, reduceTo);

  it('the encoder itself makes fast-path PNGs (control)', () => {
    expect(fastPath(png())).toBeDefined();
  });

  it('interlaced (sharp progressive and hand-made Adam7 flag)', async () => {
    const progressive = await greySharp(drawSeven(29), 29, 29).png({ progressive: true }).toBuffer();
    expect(progressive[28]).toBe(1);
    expect(fastPath(progressive)).toBeUndefined();
    expect(fastPath(png({ interlace: 1 }))).toBeUndefined();
  });

  it('palette (sharp palette output, hand-made grey palette)', async () => {
    const palette = await greySharp(drawSeven(29), 29, 29).png({ palette: true }).toBuffer();
    expect(colourType(palette)).toBe(3);
    expect(fastPath(palette)).toBeUndefined();
    const plte = chunk('PLTE', Buffer.from(neutral(Array.from({ length: 256 }, (_, i) => i))));
    expect(fastPath(png({ colourType: 3, before: [plte] }))).toBeUndefined();
  });

  it('bit depths 1, 2 and 4', () => {
    for (const bitDepth of [1, 2, 4])
      expect(fastPath(png({ bitDepth, samples: pattern(29 * 17, 2 ** bitDepth - 1) }))).toBeUndefined();
  });

  it('RGB with any non-neutral pixel', () => {
    const rgb = neutral(grey(29 * 17));
    rgb[3 * 200 + 1] = (rgb[3 * 200 + 1] ?? 0) ^ 1;
    expect(fastPath(png({ colourType: 2, samples: rgb }))).toBeUndefined();
    expect(fastPath(png({ colourType: 2, bitDepth: 16, samples: pattern(29 * 17 * 3, 65535) }))).toBeUndefined();
  });

  it.each([
    ['tRNS', chunk('tRNS', Buffer.from([0, 100]))],
    ['gAMA', chunk('gAMA', Buffer.from([0, 0, 0xb1, 0x8f]))],
    ['cHRM', chunk('cHRM', Buffer.alloc(32, 1))],
    ['sRGB', chunk('sRGB', Buffer.from([0]))],
    ['sBIT', chunk('sBIT', Buffer.from([4]))],
    ['bKGD', chunk('bKGD', Buffer.from([0, 0]))],
    ['zTXt', chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from('hi'))]))],
    ['iTXt', chunk('iTXt', Buffer.from('Comment\0\0\0\0\0hi', 'latin1'))],
    ['eXIf', chunk('eXIf', Buffer.from('MM\0*\0\0\0\x08\0\0', 'latin1'))],
    ['acTL (APNG)', chunk('acTL', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]))],
    ['a private chunk', chunk('prVt', Buffer.from('x'))],
    ['a malformed pHYs', chunk('pHYs', Buffer.alloc(5))],
    ['a tEXt without keyword', chunk('tEXt', Buffer.from('\0text', 'latin1'))],
  ])('%s', (_name, extra) => {
    expect(fastPath(png({ before: [extra] }))).toBeUndefined();
  });

  it('iCCP (sharp withIccProfile) and EXIF orientation (sharp withMetadata)', async () => {
    const icc = await greySharp(drawSeven(29), 29, 29).withIccProfile('srgb').png().toBuffer();
    expect(icc.includes(Buffer.from('iCCP'))).toBe(true);
    expect(fastPath(icc)).toBeUndefined();
    const rotated = await greySharp(drawSeven(29), 29, 29).withMetadata({ orientation: 6 }).png().toBuffer();
    expect(rotated.includes(Buffer.from('eXIf'))).toBe(true);
    expect(fastPath(rotated)).toBeUndefined();
  });

  it('irregular chunk streams: duplicate pHYs or tIME, pHYs after IDAT, IDAT chunks not consecutive, chunk before IHDR', () => {
    const pHYs = chunk('pHYs', Buffer.from([0, 0, 11, 19, 0, 0, 11, 19, 1]));
    const tIME = chunk('tIME', Buffer.from([7, 233, 1, 2, 3, 4, 5]));
    expect(fastPath(png({ before: [pHYs, pHYs] }))).toBeUndefined();
    expect(fastPath(png({ after: [tIME, tIME] }))).toBeUndefined();
    expect(fastPath(png({ after: [pHYs] }))).toBeUndefined();
    expect(fastPath(png({ after: [chunk('tEXt', Buffer.from('a\0b')), chunk('IDAT')] }))).toBeUndefined();
    const good = png();
    expect(
      fastPath(Buffer.concat([good.subarray(0, 8), chunk('tEXt', Buffer.from('a\0b')), good.subarray(8)])),
    ).toBeUndefined();
  });

  it('bad CRC (IHDR, IDAT, ancillary, IEND)', () => {
    const good = png({ before: [chunk('tEXt', Buffer.from('a\0b'))] });
    // IHDR CRC at 29..32, tEXt data at 41..43 (CRC follows), IDAT data from 56, IEND CRC the last 4 bytes.
    for (const at of [30, 42, 60, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] = (bad[at] ?? 0) ^ 0x10;
      expect(fastPath(bad)).toBeUndefined();
    }
  });

  it('zlib stream: corrupt, bad Adler-32, too short, too long, data after its end', () => {
    expect(
      fastPath(png({ zlib: (f) => Buffer.concat([deflateSync(f).subarray(0, 10), Buffer.from('garbage!')]) })),
    ).toBeUndefined();
    expect(
      fastPath(
        png({
          zlib: (f) => {
            const z = deflateSync(f);
            z[z.length - 1] = (z[z.length - 1] ?? 0) ^ 1;
            return z;
          },
        }),
      ),
    ).toBeUndefined();
    expect(fastPath(png({ zlib: (f) => deflateSync(f.subarray(0, f.length - 1)) }))).toBeUndefined();
    expect(fastPath(png({ zlib: (f) => deflateSync(Buffer.concat([f, Buffer.alloc(1)])) }))).toBeUndefined();
    expect(fastPath(png({ zlib: (f) => Buffer.concat([deflateSync(f), Buffer.from([0])]) }))).toBeUndefined();
  });

  it('unknown filter type', () => {
    expect(fastPath(png({ zlib: (f) => deflateSync(Buffer.from(f).fill(5, 0, 1)) }))).toBeUndefined();
  });

  it('truncated, IEND missing, bytes after IEND', () => {
    const good = png();
    for (const cut of [8, 20, 40, good.length - 20, good.length - 12, good.length - 1])
      expect(fastPath(good.subarray(0, cut))).toBeUndefined();
    expect(fastPath(Buffer.concat([good, Buffer.from([0])]))).toBeUndefined();
    expect(fastPath(Buffer.concat([good, chunk('tEXt', Buffer.from('a\0b'))]))).toBeUndefined();
  });

  it('more pixels than maxPixels; reduceTo asking for fewer pixels', () => {
    const good = png();
    expect(fastPath(good, 29 * 17)).toBeDefined();
    expect(fastPath(good, 29 * 17 - 1)).toBeUndefined();
    expect(fastPath(good, MAX_PIXELS, (w, h) => ({ width: w - 1, height: h }))).toBeUndefined();
  });

  it('bad input is rejected with the same code and message with the fast path on or off', async () => {
    const good = png();
    const truncatedInData = good.subarray(0, good.length - 30);
    const corrupt = png({ zlib: () => Buffer.from('garbage garbage garbage!') });
    for (const [bytes, maxPixels] of [
      [truncatedInData, MAX_PIXELS],
      [good.subarray(0, good.length - 12), MAX_PIXELS],
      [corrupt, MAX_PIXELS],
      [good, 100],
    ] as const) {
      const on = await decodeRaster(bytes, 'png', maxPixels).catch((e: unknown) => e);
      const off = await withoutFastPath(() => decodeRaster(bytes, 'png', maxPixels).catch((e: unknown) => e));
      expect(on).toBeInstanceOf(ImageRejection);
      expect(off).toBeInstanceOf(ImageRejection);
      expect([(on as ImageRejection).code, (on as ImageRejection).message]).toEqual([
        (off as ImageRejection).code,
        (off as ImageRejection).message,
      ]);
    }
  });
});

describe('preprocessImage is unchanged by the PNG fast path', () => {
  const seven = drawSeven(200);
  const mnist28 = Uint8Array.from(drawSeven(28), (v) => 255 - v);

  it.each([
    ['28x28 grey (MNIST-style, white on black)', () => greySharp(mnist28, 28, 28).png().toBuffer(), OPTS],
    ['28x28 neutral RGB (sharp from 1-channel raw)', () => grayPng(mnist28, 28, 28), OPTS],
    ['200x200 grey digit, black on white', () => greySharp(seven, 200, 200).png().toBuffer(), OPTS],
    [
      '200x200 16-bit grey',
      () =>
        greySharp(
          Uint16Array.from(seven, (v) => v * 257),
          200,
          200,
        )
          .png()
          .toBuffer(),
      OPTS,
    ],
    [
      '200x200 grey+alpha',
      async () =>
        encodePng({ width: 200, height: 200, colourType: 4, samples: Array.from(seven).flatMap((v) => [0, 255 - v]) }),
      OPTS,
    ],
    [
      '500x500 grey (reduced by sharp: fast path not taken)',
      () => greySharp(drawSeven(500), 500, 500).png().toBuffer(),
      OPTS,
    ],
    ['200x200 grey, xray profile', () => greySharp(seven, 200, 200).png().toBuffer(), { ...XRAY, xraySize: 224 }],
  ] as [string, () => Promise<Buffer>, PreprocessOptions][])('%s', async (_name, make, opts) => {
    const bytes = await make();
    const fast = await preprocessImage(bytes, opts);
    const slow = await withoutFastPath(() => preprocessImage(bytes, opts));
    expect(fast.metadata).toEqual(slow.metadata);
    expect(firstDifference(fast.pixels, slow.pixels)).toBe(-1);
  });
});
