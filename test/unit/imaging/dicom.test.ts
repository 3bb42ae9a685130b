import sharp from 'sharp';
import { deflateRawSync } from 'node:zlib';
import { ImageRejection, preprocessImage, SUPPORTED_TRANSFER_SYNTAXES } from '../../../src/imaging';
import { applyWindow, decodeDicom } from '../../../src/imaging/dicom';
import {
  DicomElement,
  OPTS,
  PATIENT,
  TS,
  XRAY,
  centreOfMass,
  drawSeven,
  imageElements,
  j2kEncode,
  jpegLosslessEncode,
  jpegLsEncode,
  le16,
  ramp,
  rleEncode,
  withComponentIds,
  writeDicom,
} from './fixtures';

const W = 64;
const H = 48;
/** xray at the native size: the letterbox is the identity, so outputs can be checked pixel by pixel. */
const NATIVE = { ...XRAY, xraySize: W };
const WC = 2000;
const WW = 3000;
const windowEls: DicomElement[] = [
  [0x0028, 0x1050, 'DS', String(WC)],
  [0x0028, 0x1051, 'DS', String(WW)],
];

/** DICOM linear VOI (PS3.3 C.11.2.1.2.1), the reference for every numeric check. */
function linearWindow(x: number, c: number, w: number): number {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 1;
  return (x - (c - 0.5)) / (w - 1) + 0.5;
}

/** Pixel (x, y) of the letterboxed (H < W: rows offset by the padding) native-size xray output. */
function sampleAt(pixels: Float32Array, x: number, y: number): number {
  const oy = Math.floor((W - H) / 2);
  return pixels[(oy + y) * W + x] ?? NaN;
}

function maxError(pixels: Float32Array, expected: (i: number) => number): number {
  let err = 0;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) err = Math.max(err, Math.abs(sampleAt(pixels, x, y) - expected(y * W + x)));
  return err;
}

/** Max |a - b| over two images of the same size. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return err;
}

/** Bit-packed 1-bit pixels (PS3.5 8.1.1): first pixel in the least significant bit, frames not padded to bytes. */
function packBits(bits: readonly number[]): Buffer {
  const out = Buffer.alloc(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    if (b) out[i >> 3] = (out[i >> 3] ?? 0) | (1 << (i & 7));
  });
  return out;
}

const values12 = ramp(W, H, 4096); // 12-bit stored values 0..4095
const expected12 = (i: number): number => linearWindow(values12[i] ?? 0, WC, WW);
const attrs12 = { rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, extra: windowEls };

describe('DICOM transfer syntaxes (12-bit ramp, window 2000/3000, checked pixel by pixel)', () => {
  const lossless: [string, string, () => Promise<Buffer> | Buffer][] = [
    [
      'Explicit VR Little Endian',
      TS.explicitLE,
      () => writeDicom(TS.explicitLE, imageElements(attrs12), { native: le16(values12) }),
    ],
    [
      'Implicit VR Little Endian',
      TS.implicitLE,
      () => writeDicom(TS.implicitLE, imageElements(attrs12), { native: le16(values12) }),
    ],
    [
      'Explicit VR Big Endian',
      TS.explicitBE,
      () => writeDicom(TS.explicitBE, imageElements(attrs12), { native: le16(values12) }),
    ],
    [
      'Deflated Explicit VR Little Endian',
      TS.deflatedLE,
      () => writeDicom(TS.deflatedLE, imageElements(attrs12), { native: le16(values12) }),
    ],
    [
      'RLE Lossless',
      TS.rle,
      () => writeDicom(TS.rle, imageElements(attrs12), { fragments: [rleEncode(values12, W * H, 1, 2)] }),
    ],
    [
      'JPEG Lossless (4.57)',
      TS.jpegLossless,
      () =>
        writeDicom(TS.jpegLossless, imageElements(attrs12), { fragments: [jpegLosslessEncode(values12, W, H, 12)] }),
    ],
    [
      'JPEG Lossless SV1 (4.70)',
      TS.jpegLosslessSV1,
      () =>
        writeDicom(TS.jpegLosslessSV1, imageElements(attrs12), { fragments: [jpegLosslessEncode(values12, W, H, 12)] }),
    ],
    [
      'JPEG-LS Lossless (4.80)',
      TS.jpegLs,
      async () =>
        writeDicom(TS.jpegLs, imageElements(attrs12), { fragments: [await jpegLsEncode(le16(values12), W, H, 12)] }),
    ],
    [
      'JPEG 2000 Lossless (4.90)',
      TS.j2kLossless,
      async () =>
        writeDicom(TS.j2kLossless, imageElements(attrs12), {
          fragments: [await j2kEncode(le16(values12), W, H, 12, false)],
        }),
    ],
    // 4.91 allows lossy; a reversible code stream is valid in it and lets us check exactly.
    [
      'JPEG 2000 (4.91)',
      TS.j2k,
      async () =>
        writeDicom(TS.j2k, imageElements(attrs12), { fragments: [await j2kEncode(le16(values12), W, H, 12, false)] }),
    ],
  ];

  it.each(lossless)('%s decodes exactly', async (_name, ts, make) => {
    const r = await preprocessImage(await make(), NATIVE);
    expect(r.metadata.dicom).toMatchObject({
      transferSyntax: ts,
      transferSyntaxName: SUPPORTED_TRANSFER_SYNTAXES[ts]?.name,
      bitsStored: 12,
      pixelRepresentation: 0,
      modality: 'CT',
      photometricInterpretation: 'MONOCHROME2',
    });
    expect(r.metadata.source).toMatchObject({ format: 'dicom', width: W, height: H, bitsPerSample: 12 });
    expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
  });

  it('JPEG-LS near-lossless (4.81) stays within its error bound', async () => {
    const near = 3;
    const bytes = writeDicom(TS.jpegLsNear, imageElements(attrs12), {
      fragments: [await jpegLsEncode(le16(values12), W, H, 12, near)],
    });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, expected12)).toBeLessThanOrEqual(near / (WW - 1) + 1e-5);
  });

  it('JPEG baseline (4.50), 8-bit, encapsulated from a sharp JPEG, matches a reference decode', async () => {
    const v8 = ramp(W, H, 256);
    const jpeg = await sharp(Buffer.from(v8), { raw: { width: W, height: H, channels: 1 } })
      .jpeg({ quality: 95 })
      .toBuffer();
    // JPEG is lossy: the reference is libvips' own decode of the same code stream.
    const reference = await sharp(jpeg).toColourspace('b-w').raw().toBuffer();
    const bytes = writeDicom(
      TS.jpegBaseline,
      imageElements({
        rows: H,
        cols: W,
        bitsAllocated: 8,
        extra: [
          [0x0028, 0x1050, 'DS', '128'],
          [0x0028, 0x1051, 'DS', '256'],
        ],
      }),
      { fragments: [jpeg] },
    );
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(reference[i] ?? 0, 128, 256))).toBeLessThanOrEqual(1 / 255 + 1e-5);
    expect(r.metadata.dicom?.transferSyntax).toBe(TS.jpegBaseline);
  });

  it('JPEG baseline split over several fragments', async () => {
    const v8 = ramp(W, H, 256);
    const jpeg = await sharp(Buffer.from(v8), { raw: { width: W, height: H, channels: 1 } })
      .jpeg({ quality: 100 })
      .toBuffer();
    const half = Math.floor(jpeg.length / 2) & ~1;
    const bytes = writeDicom(TS.jpegBaseline, imageElements({ rows: H, cols: W, bitsAllocated: 8 }), {
      fragments: [jpeg.subarray(0, half), jpeg.subarray(half)],
    });
    const r = await preprocessImage(bytes, NATIVE);
    expect(r.metadata.quality.blank).toBe(false);
    expect(r.metadata.quality.warnings).toContain('auto-window');
  });

  it('RLE with 8-bit samples and with 3-sample RGB', async () => {
    const v8 = ramp(W, H, 256);
    const grey = writeDicom(
      TS.rle,
      imageElements({
        rows: H,
        cols: W,
        bitsAllocated: 8,
        extra: [
          [0x0028, 0x1050, 'DS', '127.5'],
          [0x0028, 0x1051, 'DS', '256'],
        ],
      }),
      { fragments: [rleEncode(v8, W * H, 1, 1)] },
    );
    const g = await preprocessImage(grey, NATIVE);
    expect(maxError(g.pixels, (i) => linearWindow(v8[i] ?? 0, 127.5, 256))).toBeLessThan(1e-5);

    const rgb: number[] = [];
    for (const v of v8) rgb.push(v, 0, 0);
    const colour = writeDicom(
      TS.rle,
      imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'RGB' }),
      { fragments: [rleEncode(rgb, W * H, 3, 1)] },
    );
    const c = await preprocessImage(colour, NATIVE);
    expect(maxError(c.pixels, (i) => (0.299 * (v8[i] ?? 0)) / 255)).toBeLessThan(1e-5);
    expect(c.metadata.quality.warnings).toContain('colour-converted-to-grey');
  });

  it('native RGB, planar configuration 1', async () => {
    const n = W * H;
    const planes = Buffer.alloc(n * 3);
    for (let i = 0; i < n; i++) planes[n + i] = 200; // green plane only
    const bytes = writeDicom(
      TS.explicitLE,
      imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, planar: 1, photometric: 'RGB' }),
      { native: planes, vr: 'OB' },
    );
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, () => (0.587 * 200) / 255)).toBeLessThan(1e-5);
  });
});

describe('DICOM pixel semantics', () => {
  it('16-bit signed with rescale slope/intercept and window: known HU values map to the expected output', async () => {
    // CT: HU = 2 * stored - 1024; soft-tissue window 40/400.
    const hu = [-2048, -1000, -160, -158, 0, 40, 140, 238, 240, 3000]; // (hu + 1024) even: integral stored values
    const stored = hu.map((h) => (h + 1024) / 2);
    const values: number[] = [];
    for (let i = 0; i < W * H; i++) values.push(stored[i % hu.length] ?? 0);
    values[0] = -30000 / 2; // a negative stored value exercises sign handling
    const bytes = writeDicom(
      TS.explicitLE,
      imageElements({
        rows: H,
        cols: W,
        bitsAllocated: 16,
        bitsStored: 16,
        pixelRepresentation: 1,
        extra: [
          [0x0028, 0x1050, 'DS', '40'],
          [0x0028, 0x1051, 'DS', '400'],
          [0x0028, 0x1052, 'DS', '-1024'],
          [0x0028, 0x1053, 'DS', '2'],
        ],
      }),
      { native: le16(values) },
    );
    const r = await preprocessImage(bytes, NATIVE);
    const at = (i: number): number => sampleAt(r.pixels, i % W, Math.floor(i / W));
    // HU 40 (the centre) -> 0.50125; -160 (lower edge) -> 0; 240 (beyond upper edge) -> 1; 140 -> 0.75188.
    expect(at(5)).toBeCloseTo((40 - 39.5) / 399 + 0.5, 5);
    expect(at(2)).toBe(0);
    expect(at(8)).toBe(1);
    expect(at(6)).toBeCloseTo((140 - 39.5) / 399 + 0.5, 5);
    expect(at(0)).toBe(0); // -30000 HU
    expect(maxError(r.pixels, (i) => linearWindow(2 * (values[i] ?? 0) - 1024, 40, 400))).toBeLessThan(1e-5);
    expect(r.metadata.dicom).toMatchObject({ bitsStored: 16, pixelRepresentation: 1 });
  });

  it('masks bits above Bits Stored and sign-extends signed 12-bit values', async () => {
    const signed = ramp(W, H, 4096, -2048); // -2048..2047
    const words = signed.map((v) => (v & 0x0fff) | 0xa000); // junk (e.g. overlay) bits in 12..15
    const extra: DicomElement[] = [
      [0x0028, 0x1050, 'DS', '0'],
      [0x0028, 0x1051, 'DS', '4096'],
    ];
    for (const ts of [TS.explicitLE, TS.explicitBE, TS.rle]) {
      const pixels = ts === TS.rle ? { fragments: [rleEncode(words, W * H, 1, 2)] } : { native: le16(words) };
      const bytes = writeDicom(
        ts,
        imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, extra }),
        pixels,
      );
      const r = await preprocessImage(bytes, NATIVE);
      expect(maxError(r.pixels, (i) => linearWindow(signed[i] ?? 0, 0, 4096))).toBeLessThan(1e-5);
    }
  });

  it('honours High Bit when the stored bits are not at the bottom of the word', async () => {
    const v = ramp(W, H, 1024); // 10 bits stored in bits 2..11
    const words = v.map((x) => (x << 2) | 0x3);
    const bytes = writeDicom(
      TS.explicitLE,
      imageElements({
        rows: H,
        cols: W,
        bitsAllocated: 16,
        bitsStored: 10,
        highBit: 11,
        extra: [
          [0x0028, 0x1050, 'DS', '512'],
          [0x0028, 0x1051, 'DS', '1024'],
        ],
      }),
      { native: le16(words) },
    );
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(v[i] ?? 0, 512, 1024))).toBeLessThan(1e-5);
  });

  it('signed JPEG 2000 keeps its sign', async () => {
    const signed = ramp(W, H, 4096, -2048);
    const raw = Buffer.alloc(W * H * 2);
    signed.forEach((v, i) => raw.writeInt16LE(v, i * 2));
    const extra: DicomElement[] = [
      [0x0028, 0x1050, 'DS', '0'],
      [0x0028, 0x1051, 'DS', '4096'],
    ];
    const bytes = writeDicom(
      TS.j2kLossless,
      imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, extra }),
      { fragments: [await j2kEncode(raw, W, H, 12, true)] },
    );
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(signed[i] ?? 0, 0, 4096))).toBeLessThan(1e-5);
  });

  it('MONOCHROME1 is inverted after windowing', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements({ ...attrs12, photometric: 'MONOCHROME1' }), {
      native: le16(values12),
    });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => 1 - expected12(i))).toBeLessThan(1e-5);
    expect(r.metadata.dicom?.photometricInterpretation).toBe('MONOCHROME1');
  });

  it('without a window uses the 0.5/99.5 percentiles', async () => {
    const n = W * H;
    const values = Array.from({ length: n }, (_, i) => 1000 + Math.round((i * 3000) / (n - 1))); // uniform 1000..4000
    values[0] = 60000; // one outlier does not set the window
    const bytes = writeDicom(TS.explicitLE, imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 16 }), {
      native: le16(values),
    });
    const r = await preprocessImage(bytes, NATIVE);
    expect(r.metadata.quality.warnings).toContain('auto-window');
    const mid = n / 2 + W / 2; // value ~2500
    expect(sampleAt(r.pixels, mid % W, Math.floor(mid / W))).toBeCloseTo(0.5, 1);
    expect(sampleAt(r.pixels, 0, 0)).toBe(1);
    expect(sampleAt(r.pixels, 1, 0)).toBe(0);
    expect(sampleAt(r.pixels, W - 2, H - 1)).toBe(1);
  });

  it('VOI LUT functions LINEAR_EXACT and SIGMOID', () => {
    const v = new Float32Array([0, 50, 100]);
    applyWindow(v, 50, 100, 'LINEAR_EXACT');
    expect(Array.from(v)).toEqual([0, 0.5, 1]);
    const s = new Float32Array([50, 0]);
    applyWindow(s, 50, 100, 'SIGMOID');
    expect(s[0]).toBeCloseTo(0.5, 6);
    expect(s[1]).toBeCloseTo(1 / (1 + Math.exp(2)), 6);
  });

  it('decodes only the first frame of a multi-frame object', async () => {
    const n = W * H;
    const twoFrames = le16([...new Array<number>(n).fill(1000), ...new Array<number>(n).fill(3000)]);
    const bytes = writeDicom(TS.explicitLE, imageElements({ ...attrs12, frames: 2 }), { native: twoFrames });
    const r = await preprocessImage(bytes, NATIVE);
    expect(sampleAt(r.pixels, 10, 10)).toBeCloseTo(linearWindow(1000, WC, WW), 5);
    expect(r.metadata.quality.warnings).toContain('multi-frame');
    expect(r.metadata.source.pages).toBe(2);
  });

  it('letterboxes to xraySize (default 224) with 0 padding', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements(attrs12), {
      native: le16(new Array<number>(W * H).fill(3900)),
    });
    const r = await preprocessImage(bytes, XRAY);
    expect(r.metadata.shape).toEqual([224, 224, 1]);
    // 64x48 -> 224x168, rows 0..27 and 196..223 are padding.
    expect(r.pixels[10 * 224 + 112]).toBe(0);
    expect(r.pixels[112 * 224 + 112]).toBeCloseTo(1, 5);
    expect(r.pixels[200 * 224 + 112]).toBe(0);
    expect(r.metadata.quality.warnings).toContain('upscaled');
  });

  it('mnist profile on a DICOM digit', async () => {
    const N = 120;
    const seven = drawSeven(N);
    const bytes = writeDicom(
      TS.explicitLE,
      imageElements({
        rows: N,
        cols: N,
        bitsAllocated: 8,
        extra: [
          [0x0028, 0x1050, 'DS', '127.5'],
          [0x0028, 0x1051, 'DS', '256'],
        ],
      }),
      { native: Buffer.from(seven), vr: 'OB' },
    );
    const r = await preprocessImage(bytes, OPTS);
    const com = centreOfMass(r.pixels, 28, 28);
    expect(Math.abs(com.x - 14)).toBeLessThanOrEqual(1);
    expect(Math.abs(com.y - 14)).toBeLessThanOrEqual(1);
    expect(r.pixels[0]).toBe(0);
    expect(Math.max(...r.pixels)).toBeGreaterThan(0.9);
  });
});

describe('DICOM metadata', () => {
  it('carries only non-identifying attributes', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements(attrs12), { native: le16(values12) });
    const r = await preprocessImage(bytes, NATIVE);
    expect(r.metadata.dicom).toEqual({
      modality: 'CT',
      photometricInterpretation: 'MONOCHROME2',
      transferSyntax: TS.explicitLE,
      transferSyntaxName: 'Explicit VR Little Endian',
      bitsStored: 12,
      pixelRepresentation: 0,
    });
    const json = JSON.stringify(r.metadata);
    for (const secret of [
      PATIENT.name,
      'Doe',
      'Secret',
      PATIENT.id,
      PATIENT.birth,
      PATIENT.accession,
      '1.2.3.4.5.6.7.8.9',
    ])
      expect(json).not.toContain(secret);
  });
});

describe('DICOM codecs are reused and freed', () => {
  it('decodes the same JPEG-LS and JPEG 2000 frames repeatedly with stable results', async () => {
    const jls = writeDicom(TS.jpegLs, imageElements(attrs12), {
      fragments: [await jpegLsEncode(le16(values12), W, H, 12)],
    });
    const j2k = writeDicom(TS.j2kLossless, imageElements(attrs12), {
      fragments: [await j2kEncode(le16(values12), W, H, 12, false)],
    });
    const first = await preprocessImage(jls, NATIVE);
    for (let k = 0; k < 30; k++) {
      const a = await preprocessImage(jls, NATIVE);
      const b = await preprocessImage(j2k, NATIVE);
      expect(a.pixels).toEqual(first.pixels);
      expect(b.pixels).toEqual(first.pixels);
    }
  });

  it('a corrupt compressed frame is decode-failed, not a crash', async () => {
    const garbage = Buffer.from('this is not a code stream at all, just text');
    for (const ts of [TS.jpegBaseline, TS.jpegLossless, TS.jpegLs, TS.j2kLossless, TS.rle]) {
      const bytes = writeDicom(
        ts,
        imageElements(ts === TS.jpegBaseline ? { rows: H, cols: W, bitsAllocated: 8 } : attrs12),
        { fragments: [garbage] },
      );
      await expect(preprocessImage(bytes, NATIVE)).rejects.toMatchObject({ code: 'decode-failed' });
    }
    // The codecs still work afterwards.
    const ok = writeDicom(TS.jpegLs, imageElements(attrs12), {
      fragments: [await jpegLsEncode(le16(values12), W, H, 12)],
    });
    expect(maxError((await preprocessImage(ok, NATIVE)).pixels, expected12)).toBeLessThan(1e-5);
  });

  it('rejections are ImageRejection instances', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements(attrs12));
    await expect(preprocessImage(bytes, NATIVE)).rejects.toBeInstanceOf(ImageRejection);
  });
});

describe('DICOM conformance with reference readers', () => {
  it.each([
    ['TIFF (little endian)', [0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00]],
    ['TIFF (big endian)', [0x4d, 0x4d, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x08]],
    ['PNG', [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
    ['JPEG', [0xff, 0xd8, 0xff, 0xe0]],
  ])('a preamble carrying a %s header: DICM at offset 128 wins', async (_name, magic) => {
    const bytes = writeDicom(
      TS.explicitLE,
      imageElements(attrs12),
      { native: le16(values12) },
      { preamble: Buffer.from(magic) },
    );
    const r = await preprocessImage(bytes, NATIVE);
    expect(r.metadata.source.format).toBe('dicom');
    expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
  });

  /** A colourful 64x48 RGB pattern and its baseline JPEG (no chroma subsampling, quality 100). */
  async function colourJpeg(): Promise<Buffer> {
    const rgb = Buffer.alloc(W * H * 3);
    for (let i = 0; i < W * H; i++) {
      const x = i % W;
      const y = Math.floor(i / W);
      rgb[i * 3] = x * 4;
      rgb[i * 3 + 1] = y * 5;
      rgb[i * 3 + 2] = 255 - x * 2;
    }
    return sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .toBuffer();
  }

  /** Luminance in [0, 1] of libvips' decode of a JPEG, without any colour transform of ours. */
  async function lumaOf(jpeg: Buffer): Promise<Float32Array> {
    const raw = await sharp(jpeg).raw().toBuffer();
    const out = new Float32Array(W * H);
    for (let i = 0; i < W * H; i++)
      out[i] = (0.299 * (raw[i * 3] ?? 0) + 0.587 * (raw[i * 3 + 1] ?? 0) + 0.114 * (raw[i * 3 + 2] ?? 0)) / 255;
    return out;
  }

  it('baseline JPEG declared RGB (ids 0,1,2, no JFIF/Adobe marker) is not colour-transformed', async () => {
    const jpeg = await colourJpeg();
    const rgbIds = withComponentIds(jpeg, [0, 1, 2]);
    // Reference: the same code stream with ids 'R','G','B', which libjpeg decodes without any transform.
    const expected = await lumaOf(withComponentIds(jpeg, [0x52, 0x47, 0x42]));
    const asYcbcr = await lumaOf(rgbIds); // what a decoder guessing YCbCr returns
    expect(maxDiff(expected, asYcbcr)).toBeGreaterThan(0.1);
    const bytes = writeDicom(
      TS.jpegBaseline,
      imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'RGB' }),
      { fragments: [rgbIds] },
    );
    const r = await decodeDicom(bytes, 1e6);
    expect(maxDiff(r.image.data, expected)).toBeLessThanOrEqual(1 / 255 + 1e-5);
  });

  it('baseline JPEG declared YBR_FULL_422 with ids R,G,B is colour-transformed as YCbCr', async () => {
    const jpeg = await colourJpeg();
    const expected = await lumaOf(jpeg);
    const bytes = writeDicom(
      TS.jpegBaseline,
      imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_FULL_422' }),
      { fragments: [withComponentIds(jpeg, [0x52, 0x47, 0x42])] },
    );
    const r = await decodeDicom(bytes, 1e6);
    expect(maxDiff(r.image.data, expected)).toBeLessThanOrEqual(1 / 255 + 1e-5);
  });

  it.each([
    ['native', TS.explicitLE, () => ({ native: le16(values12) })],
    ['encapsulated (JPEG-LS)', TS.jpegLs, async () => ({ fragments: [await jpegLsEncode(le16(values12), W, H, 12)] })],
  ])(
    'an implicit-VR data set under an explicit-VR transfer syntax (%s) is read as implicit, with a warning',
    async (_name, ts, pixels) => {
      const bytes = writeDicom(ts, imageElements(attrs12), await pixels(), { vr: 'implicit' });
      const r = await preprocessImage(bytes, NATIVE);
      expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
      expect(r.metadata.quality.warnings).toContain('implicit-vr-under-explicit-transfer-syntax');
      expect(r.metadata.dicom).toMatchObject({ transferSyntax: ts, modality: 'CT', bitsStored: 12 });
    },
  );

  it('an explicit-VR data set under Implicit VR Little Endian is read as explicit, with a warning', async () => {
    const bytes = writeDicom(TS.implicitLE, imageElements(attrs12), { native: le16(values12) }, { vr: 'explicit' });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
    expect(r.metadata.quality.warnings).toContain('explicit-vr-under-implicit-transfer-syntax');
  });

  it('uncompressed YBR_FULL_422: pairs of pixels stored Y1 Y2 Cb Cr decode to their Y', async () => {
    const n = W * H;
    const y = ramp(W, H, 256);
    const bytes: number[] = [];
    for (let k = 0; k < n / 2; k++) bytes.push(y[2 * k] ?? 0, y[2 * k + 1] ?? 0, (40 + k) % 256, (200 + 3 * k) % 256);
    const dcm = writeDicom(
      TS.explicitLE,
      imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_FULL_422' }),
      { native: Buffer.from(bytes), vr: 'OB' },
    );
    const r = await preprocessImage(dcm, NATIVE);
    expect(maxError(r.pixels, (i) => (y[i] ?? 0) / 255)).toBeLessThan(1e-5);
    expect(r.metadata.quality.warnings).toContain('colour-converted-to-grey');
    // Half the bytes of a full-resolution frame: one byte short is truncated.
    await expect(preprocessImage(Buffer.from(dcm.subarray(0, dcm.length - 2)), NATIVE)).rejects.toMatchObject({
      code: 'truncated',
    });
  });

  it('Bits Allocated 1: the first of two bit-packed 13x7 frames decodes to its 0/1 pixels', async () => {
    const rows = 7;
    const cols = 13;
    const n = rows * cols; // 91 bits: frame 1 starts inside a byte
    const frame0 = Array.from({ length: n }, (_, i) => ((i * 7) % 5 === 0 || i % 11 === 3 ? 1 : 0));
    const frame1 = frame0.map((b) => 1 - b);
    const attrs = { rows, cols, bitsAllocated: 1, frames: 2, extra: [] as DicomElement[] };
    for (const [ts, vr] of [
      [TS.explicitLE, 'OW'],
      [TS.implicitLE, 'OW'],
      [TS.explicitBE, 'OB'],
    ] as const) {
      const r = await decodeDicom(
        writeDicom(ts, imageElements(attrs), { native: packBits([...frame0, ...frame1]), vr }),
        1e6,
      );
      expect(Array.from(r.image.data)).toEqual(frame0);
      expect(r.source).toMatchObject({ bitsPerSample: 1, pages: 2 });
    }
    const inverted = await decodeDicom(
      writeDicom(TS.explicitLE, imageElements({ ...attrs, photometric: 'MONOCHROME1' }), {
        native: packBits([...frame0, ...frame1]),
      }),
      1e6,
    );
    expect(Array.from(inverted.image.data)).toEqual(frame1);
  });

  it('Bits Allocated 1: a sparse mask keeps its few set pixels white (no percentile window)', async () => {
    const bits = new Array<number>(W * H).fill(0);
    for (const i of [5, 700, 2000]) bits[i] = 1;
    const r = await preprocessImage(
      writeDicom(TS.explicitLE, imageElements({ rows: H, cols: W, bitsAllocated: 1 }), { native: packBits(bits) }),
      NATIVE,
    );
    expect(maxError(r.pixels, (i) => bits[i] ?? 0)).toBe(0);
    expect(r.metadata.quality.warnings).not.toContain('auto-window');
  });

  it('8-bit samples in an OW element of a big endian file are read pairwise swapped, as written', async () => {
    const rows = 3;
    const cols = 5; // 15 bytes: the frame ends inside a swapped pair
    const v = Array.from({ length: rows * cols }, (_, i) => 10 + i * 16);
    const padded = Buffer.from([...v, 0]);
    const extra: DicomElement[] = [
      [0x0028, 0x1050, 'DS', '127.5'],
      [0x0028, 0x1051, 'DS', '256'],
    ];
    const le = await decodeDicom(
      writeDicom(TS.explicitLE, imageElements({ rows, cols, bitsAllocated: 8, extra }), { native: padded, vr: 'OW' }),
      1e6,
    );
    const be = await decodeDicom(
      writeDicom(TS.explicitBE, imageElements({ rows, cols, bitsAllocated: 8, extra }), { native: padded, vr: 'OW' }),
      1e6,
    );
    const expected = v.map((x) => linearWindow(x, 127.5, 256));
    expect(maxDiff(le.image.data, expected)).toBeLessThan(1e-6);
    expect(maxDiff(be.image.data, expected)).toBeLessThan(1e-6);
  });

  it('a Number of Frames that is not a number: frame 0 is decoded, with a warning naming the attribute', async () => {
    const n = W * H;
    const twoFrames = le16([...values12, ...new Array<number>(n).fill(0)]);
    const withFrames = (frames: string): DicomElement[] => [...imageElements(attrs12), [0x0028, 0x0008, 'IS', frames]];
    for (const bad of ['abc', '', '0']) {
      const r = await preprocessImage(writeDicom(TS.explicitLE, withFrames(bad), { native: twoFrames }), NATIVE);
      expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
      expect(r.metadata.quality.warnings).toContain('malformed-attribute-NumberOfFrames');
      expect(r.metadata.source.pages).toBeUndefined();
    }
    const decimal = await preprocessImage(writeDicom(TS.explicitLE, withFrames('2.0'), { native: twoFrames }), NATIVE);
    expect(maxError(decimal.pixels, expected12)).toBeLessThan(1e-5);
    expect(decimal.metadata.source.pages).toBe(2);
    expect(decimal.metadata.quality.warnings).toEqual(
      expect.arrayContaining(['malformed-attribute-NumberOfFrames', 'multi-frame']),
    );
  });

  it('an unreadable Number of Frames over two JPEG frames without offset table: frame 0 found by its markers', async () => {
    const v8 = ramp(W, H, 256);
    const frame0 = await sharp(Buffer.from(v8), { raw: { width: W, height: H, channels: 1 } })
      .jpeg({ quality: 95 })
      .toBuffer();
    const frame1 = await sharp(Buffer.alloc(W * H, 200), { raw: { width: W, height: H, channels: 1 } })
      .jpeg({ quality: 95 })
      .toBuffer();
    const reference = await sharp(frame0).toColourspace('b-w').raw().toBuffer();
    const els: DicomElement[] = [
      ...imageElements({
        rows: H,
        cols: W,
        bitsAllocated: 8,
        extra: [
          [0x0028, 0x1050, 'DS', '128'],
          [0x0028, 0x1051, 'DS', '256'],
        ],
      }),
      [0x0028, 0x0008, 'IS', 'two'],
    ];
    const r = await preprocessImage(writeDicom(TS.jpegBaseline, els, { fragments: [frame0, frame1] }), NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(reference[i] ?? 0, 128, 256))).toBeLessThanOrEqual(1 / 255 + 1e-5);
    expect(r.metadata.quality.warnings).toContain('malformed-attribute-NumberOfFrames');
  });

  it('other malformed values are read where safe, each with a warning naming the attribute', async () => {
    // A window that is not a number is ignored (percentile window); "40abc" is read as 40.
    const badWindow = await preprocessImage(
      writeDicom(
        TS.explicitLE,
        imageElements({
          ...attrs12,
          extra: [
            [0x0028, 0x1050, 'DS', 'centre'],
            [0x0028, 0x1051, 'DS', '3000'],
          ],
        }),
        { native: le16(values12) },
      ),
      NATIVE,
    );
    expect(badWindow.metadata.quality.warnings).toEqual(
      expect.arrayContaining(['malformed-attribute-WindowCenter', 'auto-window']),
    );
    const sorted = [...values12].sort((a, b) => a - b);
    const [lo, hi] = [0.005, 0.995].map((q) => sorted[Math.round(q * (sorted.length - 1))] ?? 0) as [number, number];
    expect(
      maxError(badWindow.pixels, (i) => Math.min(1, Math.max(0, ((values12[i] ?? 0) - lo) / (hi - lo)))),
    ).toBeLessThan(1e-5);
    const lenient = await preprocessImage(
      writeDicom(
        TS.explicitLE,
        imageElements({
          ...attrs12,
          extra: [
            [0x0028, 0x1050, 'DS', `${WC}abc`],
            [0x0028, 0x1051, 'DS', String(WW)],
          ],
        }),
        { native: le16(values12) },
      ),
      NATIVE,
    );
    expect(maxError(lenient.pixels, expected12)).toBeLessThan(1e-5);
    expect(lenient.metadata.quality.warnings).toContain('malformed-attribute-WindowCenter');
    // Bits Stored beyond Bits Allocated: all 16 bits are read; High Bit past the word: Bits Stored - 1.
    const values16 = ramp(W, H, 65536, 0).map((v) => (v * 17) % 65536);
    const wide = await preprocessImage(
      writeDicom(
        TS.explicitLE,
        imageElements({
          rows: H,
          cols: W,
          bitsAllocated: 16,
          bitsStored: 20,
          highBit: 19,
          extra: [
            [0x0028, 0x1050, 'DS', '32768'],
            [0x0028, 0x1051, 'DS', '65536'],
          ],
        }),
        { native: le16(values16) },
      ),
      NATIVE,
    );
    expect(maxError(wide.pixels, (i) => linearWindow(values16[i] ?? 0, 32768, 65536))).toBeLessThan(1e-5);
    expect(wide.metadata.quality.warnings).toEqual(
      expect.arrayContaining(['malformed-attribute-BitsStored', 'malformed-attribute-HighBit']),
    );
  });
});

describe('DICOM pixel data that reference readers also decode', () => {
  const luma = (r: number, g: number, b: number): number => 0.299 * r + 0.587 * g + 0.114 * b;

  it('PALETTE COLOR: stored values through the red/green/blue tables (first mapped value, clamping), as luminance', async () => {
    const stored = Array.from({ length: W * H }, (_, i) => (i * 7) % 64); // 0..63, the table maps 20..51
    const red = Array.from({ length: 32 }, (_, k) => k * 2000);
    const green = red.map((r) => 65535 - r);
    const blue = red.map((_, k) => (k * 997) % 65536);
    const descriptor = [32, 20, 16];
    const extra: DicomElement[] = [
      [0x0028, 0x1101, 'US', descriptor],
      [0x0028, 0x1102, 'US', descriptor],
      [0x0028, 0x1103, 'US', descriptor],
      [0x0028, 0x1201, 'OW', le16(red)],
      [0x0028, 0x1202, 'OW', le16(green)],
      [0x0028, 0x1203, 'OW', le16(blue)],
    ];
    const expected = stored.map((v) => {
      const k = Math.min(31, Math.max(0, v - 20));
      return luma(red[k] ?? 0, green[k] ?? 0, blue[k] ?? 0) / 65535;
    });
    for (const ts of [TS.explicitLE, TS.explicitBE, TS.rle]) {
      const pixels =
        ts === TS.rle
          ? { fragments: [rleEncode(stored, W * H, 1, 1)] }
          : { native: Buffer.from(stored), vr: 'OB' as const };
      const r = await decodeDicom(
        writeDicom(
          ts,
          imageElements({ rows: H, cols: W, bitsAllocated: 8, photometric: 'PALETTE COLOR', extra }),
          pixels,
        ),
        1e6,
      );
      expect(maxDiff(r.image.data, expected)).toBeLessThan(1e-6);
      expect(r.warnings).toContain('colour-converted-to-grey');
    }
  });

  it('PALETTE COLOR with segmented tables: discrete, linear and indirect segments', async () => {
    // Red: discrete 100,200,300; linear to 700 in 4 steps; indirect: the first segment again.
    const red = [0, 3, 100, 200, 300, 1, 4, 700, 2, 1, 0, 0];
    const redTable = [100, 200, 300, 400, 500, 600, 700, 100, 200, 300];
    const green = [0, 1, 5000, 1, 9, 5000]; // constant 5000
    const blue = [0, 2, 0, 900, 1, 8, 8100]; // 0, 900, then +900 a step
    const blueTable = [0, 900, 1800, 2700, 3600, 4500, 5400, 6300, 7200, 8100];
    const descriptor = [10, 0, 16];
    const extra: DicomElement[] = [
      [0x0028, 0x1101, 'US', descriptor],
      [0x0028, 0x1102, 'US', descriptor],
      [0x0028, 0x1103, 'US', descriptor],
      [0x0028, 0x1221, 'OW', le16(red)],
      [0x0028, 0x1222, 'OW', le16(green)],
      [0x0028, 0x1223, 'OW', le16(blue)],
    ];
    const stored = Array.from({ length: W * H }, (_, i) => i % 10);
    const r = await decodeDicom(
      writeDicom(
        TS.explicitLE,
        imageElements({ rows: H, cols: W, bitsAllocated: 8, photometric: 'PALETTE COLOR', extra }),
        { native: Buffer.from(stored), vr: 'OB' },
      ),
      1e6,
    );
    expect(
      maxDiff(
        r.image.data,
        stored.map((k) => luma(redTable[k] ?? 0, 5000, blueTable[k] ?? 0) / 65535),
      ),
    ).toBeLessThan(1e-6);
  });

  it('Bits Allocated 1 in RLE (one segment of the packed frame) and in Deflated Image Frame Compression', async () => {
    const rows = 7;
    const cols = 13;
    const frame0 = Array.from({ length: rows * cols }, (_, i) => ((i * 5) % 7 < 3 ? 1 : 0));
    const frame1 = frame0.map((b) => 1 - b);
    const els = imageElements({ rows, cols, bitsAllocated: 1, frames: 2 });
    const rle = writeDicom(TS.rle, els, {
      fragments: [
        rleEncode(packBits(frame0), Math.ceil((rows * cols) / 8), 1, 1),
        rleEncode(packBits(frame1), Math.ceil((rows * cols) / 8), 1, 1),
      ],
    });
    expect(Array.from((await decodeDicom(rle, 1e6)).image.data)).toEqual(frame0);
    const deflated = writeDicom(TS.deflatedFrames, els, {
      fragments: [deflateRawSync(packBits(frame0)), deflateRawSync(packBits(frame1))],
    });
    expect(Array.from((await decodeDicom(deflated, 1e6)).image.data)).toEqual(frame0);
  });

  it('Deflated Image Frame Compression of 16-bit frames decodes exactly; a frame that inflates short is decode-failed', async () => {
    const r = await preprocessImage(
      writeDicom(TS.deflatedFrames, imageElements(attrs12), { fragments: [deflateRawSync(le16(values12))] }),
      NATIVE,
    );
    expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
    const short = writeDicom(TS.deflatedFrames, imageElements(attrs12), {
      fragments: [deflateRawSync(le16(values12.slice(1)))],
    });
    await expect(preprocessImage(short, NATIVE)).rejects.toMatchObject({ code: 'decode-failed' });
  });

  it.each([
    ['Float Pixel Data', 0x0008, 'OF', 4],
    ['Double Float Pixel Data', 0x0009, 'OD', 8],
  ] as const)('%s: values through the window (NaN read as 0)', async (_name, elem, vr, size) => {
    const values = Array.from({ length: W * H }, (_, i) => (i % 97) * 0.25 - 3.5);
    values[7] = NaN;
    const data = Buffer.alloc(W * H * size);
    values.forEach((v, i) => (size === 4 ? data.writeFloatLE(v, i * 4) : data.writeDoubleLE(v, i * 8)));
    const els: DicomElement[] = [
      ...imageElements({
        rows: H,
        cols: W,
        bitsAllocated: size * 8,
        extra: [
          [0x0028, 0x1050, 'DS', '5'],
          [0x0028, 0x1051, 'DS', '20'],
        ],
      }),
      [0x7fe0, elem, vr, data],
    ];
    const r = await preprocessImage(writeDicom(TS.explicitLE, els), NATIVE);
    expect(
      maxError(r.pixels, (i) => linearWindow(Number.isNaN(values[i]) ? 0 : Math.fround(values[i] ?? 0), 5, 20)),
    ).toBeLessThan(1e-5);
  });
});
