import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { ImageRejection, PreprocessOptions, RejectionCode, preprocessImage } from '../../../src/imaging';
import { OPTS, TS, XRAY, drawSeven, grayPng, imageElements, le16, writeDicom } from './fixtures';

async function rejection(bytes: Buffer, opts: PreprocessOptions = OPTS): Promise<ImageRejection> {
  try {
    await preprocessImage(bytes, opts);
  } catch (e) {
    if (e instanceof ImageRejection) return e;
    throw e;
  }
  throw new Error('expected an ImageRejection, got a result');
}

async function expectCode(bytes: Buffer, code: RejectionCode, opts: PreprocessOptions = OPTS): Promise<ImageRejection> {
  const r = await rejection(bytes, opts);
  expect(r.code).toBe(code);
  expect(r.message.length).toBeGreaterThan(5);
  return r;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = (CRC_TABLE[(c ^ x) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}
/** A ~60-byte PNG whose header declares width x height (8-bit grey) with a tiny bogus IDAT. */
function declaredPng(
  width: number,
  height: number,
  idat = Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grey
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('bad input is rejected with a code, never a crash', () => {
  it('empty', async () => {
    await expectCode(Buffer.alloc(0), 'empty');
  });

  it('too-large is checked before anything is parsed', async () => {
    const png = await grayPng(drawSeven(64), 64, 64);
    const r = await expectCode(png, 'too-large', { ...OPTS, maxInputBytes: png.length - 1 });
    expect(r.detail).toMatchObject({ bytes: png.length, maxInputBytes: png.length - 1 });
    await expectCode(Buffer.alloc(2048, 0x41), 'too-large', { ...OPTS, maxInputBytes: 1024 });
    await expect(preprocessImage(png, { ...OPTS, maxInputBytes: png.length })).resolves.toBeDefined();
  });

  it('random bytes and text are not-an-image', async () => {
    await expectCode(randomBytes(4096), 'not-an-image');
    await expectCode(Buffer.from('Hello, this is a plain text upload.\n'), 'not-an-image');
    await expectCode(Buffer.from('{"json": true}'), 'not-an-image');
    await expectCode(Buffer.from([0x89]), 'not-an-image');
  });

  it('BMP is unsupported-format', async () => {
    const bmp = Buffer.alloc(58);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(58, 2);
    bmp.writeUInt32LE(54, 10);
    bmp.writeUInt32LE(40, 14);
    bmp.writeInt32LE(1, 18);
    bmp.writeInt32LE(1, 22);
    bmp.writeUInt16LE(1, 26);
    bmp.writeUInt16LE(24, 28);
    const r = await expectCode(bmp, 'unsupported-format');
    expect(r.detail).toMatchObject({ format: 'bmp' });
  });

  it.each([
    ['plain', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'],
    [
      'with XML prolog and comment',
      '<?xml version="1.0"?>\n<!-- drawn by hand -->\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    ],
    [
      'with BOM and leading whitespace',
      '\ufeff  \n\t<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
    ],
    [
      'with doctype',
      '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd"><svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
    [
      'with an external reference',
      '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="file:///etc/passwd"/></svg>',
    ],
  ])('SVG (%s) is unsupported-format and never rendered', async (_name, text) => {
    const r = await expectCode(Buffer.from(text, 'utf8'), 'unsupported-format');
    expect(r.detail).toMatchObject({ format: 'svg' });
  });

  it('a PNG declaring 100000x100000 pixels is too-many-pixels before any pixel is allocated', async () => {
    const bomb = declaredPng(100_000, 100_000);
    expect(bomb.length).toBeLessThan(100);
    const rssBefore = process.memoryUsage().rss;
    const t0 = Date.now();
    const r = await expectCode(bomb, 'too-many-pixels');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024); // 10^10 pixels would be 10 GB
    expect(r.detail).toMatchObject({ width: 100_000, height: 100_000 });
  });

  it('a JPEG whose SOF declares 65000x65000 is too-many-pixels', async () => {
    const jpeg = Buffer.from(
      await sharp(Buffer.from(drawSeven(16)), { raw: { width: 16, height: 16, channels: 1 } })
        .jpeg()
        .toBuffer(),
    );
    let patched = false;
    for (let i = 2; i + 9 < jpeg.length; i++) {
      if (jpeg[i] === 0xff && (jpeg[i + 1] === 0xc0 || jpeg[i + 1] === 0xc2)) {
        jpeg.writeUInt16BE(65000, i + 5);
        jpeg.writeUInt16BE(65000, i + 7);
        patched = true;
        break;
      }
    }
    expect(patched).toBe(true);
    await expectCode(jpeg, 'too-many-pixels');
  });

  it('maxPixels applies to ordinary images too (limit below the image size)', async () => {
    const png = await grayPng(drawSeven(64), 64, 64);
    await expectCode(png, 'too-many-pixels', { ...OPTS, maxPixels: 64 * 64 - 1 });
    await expect(preprocessImage(png, { ...OPTS, maxPixels: 64 * 64 })).resolves.toBeDefined();
  });

  it('a DICOM declaring Rows x Columns x frames over the limit is too-many-pixels', async () => {
    const big = writeDicom(TS.explicitLE, imageElements({ rows: 60000, cols: 60000, bitsAllocated: 16 }), {
      native: le16([1, 2, 3, 4]),
    });
    await expectCode(big, 'too-many-pixels');
    const frames = writeDicom(TS.explicitLE, imageElements({ rows: 100, cols: 100, bitsAllocated: 8, frames: 1000 }), {
      native: Buffer.alloc(10000),
      vr: 'OB',
    });
    await expectCode(frames, 'too-many-pixels', { ...OPTS, maxPixels: 500_000 });
  });

  it('a deflated DICOM that inflates beyond the pixel budget is too-large (zip bomb)', async () => {
    const zeros = Buffer.alloc(24 * 1024 * 1024);
    const bomb = writeDicom(TS.deflatedLE, imageElements({ rows: 16, cols: 16, bitsAllocated: 8 }), {
      native: zeros,
      vr: 'OB',
    });
    expect(bomb.length).toBeLessThan(100 * 1024);
    await expectCode(bomb, 'too-large', { ...OPTS, maxPixels: 1000 });
  });

  it('truncated PNG and JPEG are truncated', async () => {
    const seven = drawSeven(128);
    const png = await grayPng(seven, 128, 128);
    const jpeg = await sharp(Buffer.from(seven), { raw: { width: 128, height: 128, channels: 1 } })
      .jpeg()
      .toBuffer();
    for (const cut of [0.3, 0.6, 0.95]) {
      await expectCode(png.subarray(0, Math.floor(png.length * cut)), 'truncated');
      await expectCode(jpeg.subarray(0, Math.floor(jpeg.length * cut)), 'truncated');
    }
    await expectCode(png.subarray(0, 20), 'truncated'); // inside IHDR
    await expectCode(png.subarray(0, png.length - 12), 'truncated'); // IEND missing
  });

  it('truncated DICOM is truncated (inside the pixel data, inside the header, inside a fragment)', async () => {
    const values = new Array<number>(64 * 64).fill(100);
    const dcm = writeDicom(TS.explicitLE, imageElements({ rows: 64, cols: 64, bitsAllocated: 16 }), {
      native: le16(values),
    });
    await expectCode(dcm.subarray(0, dcm.length - 1000), 'truncated');
    await expectCode(dcm.subarray(0, 300), 'truncated');
    const implicit = writeDicom(TS.implicitLE, imageElements({ rows: 64, cols: 64, bitsAllocated: 16 }), {
      native: le16(values),
    });
    await expectCode(implicit.subarray(0, implicit.length - 10), 'truncated');
    const jpeg = await sharp(Buffer.from(drawSeven(64)), { raw: { width: 64, height: 64, channels: 1 } })
      .jpeg()
      .toBuffer();
    const enc = writeDicom(TS.jpegBaseline, imageElements({ rows: 64, cols: 64, bitsAllocated: 8 }), {
      fragments: [jpeg],
    });
    await expectCode(enc.subarray(0, enc.length - 200), 'truncated');
  });

  it('a truncated DICOM file whose preamble carries a TIFF header is truncated, not a TIFF error', async () => {
    const values = new Array<number>(64 * 64).fill(100);
    const dcm = writeDicom(
      TS.explicitLE,
      imageElements({ rows: 64, cols: 64, bitsAllocated: 16 }),
      { native: le16(values) },
      { preamble: Buffer.from([0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00]) },
    );
    await expectCode(dcm.subarray(0, dcm.length - 1000), 'truncated');
    await expectCode(dcm.subarray(0, 200), 'truncated'); // inside the file meta information
    const metaEnd = 144 + dcm.readUInt32LE(140); // after (0002,0000) File Meta Information Group Length and the group
    await expectCode(dcm.subarray(0, metaEnd), 'truncated'); // right after it
  });

  it('a DICOM data set without preamble and DICM marker is not-an-image', async () => {
    const dcm = writeDicom(TS.explicitLE, imageElements({ rows: 8, cols: 8, bitsAllocated: 8 }), {
      native: Buffer.alloc(64),
      vr: 'OB',
    });
    await expectCode(dcm.subarray(132), 'not-an-image');
  });

  it("a DICOM data set the parser cannot read is dicom-malformed, with the parser's message", async () => {
    const junkSequence = writeDicom(
      TS.explicitLE,
      [
        ...imageElements({ rows: 8, cols: 8, bitsAllocated: 8 }),
        [0x0008, 0x1140, 'SQ', Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])],
      ],
      { native: Buffer.alloc(64), vr: 'OB' },
    );
    const r = await expectCode(junkSequence, 'dicom-malformed');
    expect(r.message).toMatch(/^DICOM data set could not be parsed: dicomParser\.\S+: .*item/);
    const noSyntax = await expectCode(
      writeDicom('', imageElements({ rows: 8, cols: 8, bitsAllocated: 8 }), { native: Buffer.alloc(64), vr: 'OB' }),
      'dicom-malformed',
    );
    expect(noSyntax.message).toContain('Transfer Syntax UID (0002,0010)');
    const paletteWithoutTable = writeDicom(
      TS.explicitLE,
      imageElements({ rows: 8, cols: 8, bitsAllocated: 8, photometric: 'PALETTE COLOR' }),
      { native: Buffer.alloc(64), vr: 'OB' },
    );
    expect((await expectCode(paletteWithoutTable, 'dicom-malformed')).message).toContain('Lookup Table');
    const noRows = writeDicom(
      TS.explicitLE,
      imageElements({ rows: 8, cols: 8, bitsAllocated: 8 }).filter(([g, e]) => !(g === 0x0028 && e === 0x0010)),
      { native: Buffer.alloc(64), vr: 'OB' },
    );
    expect((await expectCode(noRows, 'dicom-malformed')).message).toContain('Rows/Columns');
  });

  it('DICOM without pixel data is dicom-no-pixel-data', async () => {
    const sr = writeDicom(TS.explicitLE, [
      [0x0008, 0x0060, 'CS', 'SR'],
      [0x0010, 0x0010, 'PN', 'Doe^John'],
    ]);
    const r = await expectCode(sr, 'dicom-no-pixel-data');
    expect(r.message).not.toContain('Doe');
  });

  it.each([
    ['HTJ2K', TS.htj2k],
    ['MPEG-4', TS.mpeg4],
    ['a made-up UID', '1.2.3.999.1'],
  ])('DICOM in %s is dicom-unsupported-transfer-syntax naming the UID', async (_name, uid) => {
    const bytes = writeDicom(uid, imageElements({ rows: 8, cols: 8, bitsAllocated: 8 }), {
      fragments: [Buffer.from([1, 2, 3, 4])],
    });
    const r = await expectCode(bytes, 'dicom-unsupported-transfer-syntax');
    expect(r.message).toContain(uid);
    expect(r.detail).toMatchObject({ transferSyntax: uid });
  });

  it('12-bit JPEG Extended (libjpeg-turbo is 8-bit only) is dicom-unsupported-transfer-syntax', async () => {
    const bytes = writeDicom(
      '1.2.840.10008.1.2.4.51',
      imageElements({ rows: 8, cols: 8, bitsAllocated: 16, bitsStored: 12 }),
      { fragments: [Buffer.from([0xff, 0xd8, 0xff, 0xd9])] },
    );
    const r = await expectCode(bytes, 'dicom-unsupported-transfer-syntax');
    expect(r.message).toContain('1.2.840.10008.1.2.4.51');
  });

  it('a PNG with a valid header but corrupt image data is decode-failed', async () => {
    await expectCode(declaredPng(16, 16, Buffer.from('garbage garbage garbage!')), 'decode-failed');
  });

  it('unsupported DICOM pixel layouts are unsupported-format', async () => {
    const oneBitColour = writeDicom(
      TS.explicitLE,
      imageElements({ rows: 8, cols: 8, bitsAllocated: 1, samplesPerPixel: 3, photometric: 'RGB' }),
      { native: Buffer.alloc(24), vr: 'OB' },
    );
    await expectCode(oneBitColour, 'unsupported-format');
    const oneBitJpeg = writeDicom(TS.jpegBaseline, imageElements({ rows: 8, cols: 8, bitsAllocated: 1 }), {
      fragments: [Buffer.from([0xff, 0xd8, 0xff, 0xd9])],
    });
    await expectCode(oneBitJpeg, 'unsupported-format');
    const twelveBits = writeDicom(TS.explicitLE, imageElements({ rows: 8, cols: 8, bitsAllocated: 12 }), {
      native: Buffer.alloc(96),
      vr: 'OB',
    });
    await expectCode(twelveBits, 'unsupported-format');
  });

  it('invalid options are a programming error (TypeError), not a rejection', async () => {
    const png = await grayPng(drawSeven(16), 16, 16);
    await expect(preprocessImage(png, { ...XRAY, xraySize: 0 })).rejects.toBeInstanceOf(TypeError);
  });

  it('fuzz: mutated and cut images only ever yield results or ImageRejections', async () => {
    const seven = drawSeven(48);
    const sources = [
      await grayPng(seven, 48, 48),
      await sharp(Buffer.from(seven), { raw: { width: 48, height: 48, channels: 1 } })
        .jpeg()
        .toBuffer(),
      await sharp(Buffer.from(seven), { raw: { width: 48, height: 48, channels: 1 } })
        .gif()
        .toBuffer(),
      await sharp(Buffer.from(seven), { raw: { width: 48, height: 48, channels: 1 } })
        .webp()
        .toBuffer(),
      await sharp(Buffer.from(seven), { raw: { width: 48, height: 48, channels: 1 } })
        .tiff()
        .toBuffer(),
      writeDicom(TS.explicitLE, imageElements({ rows: 48, cols: 48, bitsAllocated: 8 }), {
        native: Buffer.from(seven),
        vr: 'OB',
      }),
    ];
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (const src of sources) {
      for (let k = 0; k < 25; k++) {
        const b = Buffer.from(src.subarray(0, k % 5 === 0 ? 1 + rand(src.length) : src.length));
        for (let m = 0; m < 1 + rand(6); m++) if (b.length > 140) b[140 + rand(b.length - 140)] = rand(256);
        try {
          const r = await preprocessImage(b, OPTS);
          expect(r.pixels).toHaveLength(784);
        } catch (e) {
          if (!(e instanceof ImageRejection))
            throw new Error(`non-rejection error for a mutated ${src.subarray(0, 4).toString('hex')}: ${String(e)}`, {
              cause: e,
            });
        }
      }
    }
  });
});
