import sharp from 'sharp';
import { ImageRejection, preprocessImage, SUPPORTED_TRANSFER_SYNTAXES } from '../../../src/imaging';
import { applyWindow } from '../../../src/imaging/dicom';
import {
  DicomElement, OPTS, PATIENT, TS, XRAY, centreOfMass, drawSeven, imageElements, j2kEncode, jpegLosslessEncode, jpegLsEncode, le16, ramp, rleEncode, writeDicom,
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
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) err = Math.max(err, Math.abs(sampleAt(pixels, x, y) - expected(y * W + x)));
  return err;
}

const values12 = ramp(W, H, 4096); // 12-bit stored values 0..4095
const expected12 = (i: number): number => linearWindow(values12[i] ?? 0, WC, WW);
const attrs12 = { rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, extra: windowEls };

describe('DICOM transfer syntaxes (12-bit ramp, window 2000/3000, checked pixel by pixel)', () => {
  const lossless: [string, string, () => Promise<Buffer> | Buffer][] = [
    ['Explicit VR Little Endian', TS.explicitLE, () => writeDicom(TS.explicitLE, imageElements(attrs12), { native: le16(values12) })],
    ['Implicit VR Little Endian', TS.implicitLE, () => writeDicom(TS.implicitLE, imageElements(attrs12), { native: le16(values12) })],
    ['Explicit VR Big Endian', TS.explicitBE, () => writeDicom(TS.explicitBE, imageElements(attrs12), { native: le16(values12) })],
    ['Deflated Explicit VR Little Endian', TS.deflatedLE, () => writeDicom(TS.deflatedLE, imageElements(attrs12), { native: le16(values12) })],
    ['RLE Lossless', TS.rle, () => writeDicom(TS.rle, imageElements(attrs12), { fragments: [rleEncode(values12, W * H, 1, 2)] })],
    ['JPEG Lossless (4.57)', TS.jpegLossless, () => writeDicom(TS.jpegLossless, imageElements(attrs12), { fragments: [jpegLosslessEncode(values12, W, H, 12)] })],
    ['JPEG Lossless SV1 (4.70)', TS.jpegLosslessSV1, () => writeDicom(TS.jpegLosslessSV1, imageElements(attrs12), { fragments: [jpegLosslessEncode(values12, W, H, 12)] })],
    ['JPEG-LS Lossless (4.80)', TS.jpegLs, async () => writeDicom(TS.jpegLs, imageElements(attrs12), { fragments: [await jpegLsEncode(le16(values12), W, H, 12)] })],
    ['JPEG 2000 Lossless (4.90)', TS.j2kLossless, async () => writeDicom(TS.j2kLossless, imageElements(attrs12), { fragments: [await j2kEncode(le16(values12), W, H, 12, false)] })],
    // 4.91 allows lossy; a reversible code stream is valid in it and lets us check exactly.
    ['JPEG 2000 (4.91)', TS.j2k, async () => writeDicom(TS.j2k, imageElements(attrs12), { fragments: [await j2kEncode(le16(values12), W, H, 12, false)] })],
  ];

  it.each(lossless)('%s decodes exactly', async (_name, ts, make) => {
    const r = await preprocessImage(await make(), NATIVE);
    expect(r.metadata.dicom).toMatchObject({ transferSyntax: ts, transferSyntaxName: SUPPORTED_TRANSFER_SYNTAXES[ts]?.name, bitsStored: 12, pixelRepresentation: 0, modality: 'CT', photometricInterpretation: 'MONOCHROME2' });
    expect(r.metadata.source).toMatchObject({ format: 'dicom', width: W, height: H, bitsPerSample: 12 });
    expect(maxError(r.pixels, expected12)).toBeLessThan(1e-5);
  });

  it('JPEG-LS near-lossless (4.81) stays within its error bound', async () => {
    const near = 3;
    const bytes = writeDicom(TS.jpegLsNear, imageElements(attrs12), { fragments: [await jpegLsEncode(le16(values12), W, H, 12, near)] });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, expected12)).toBeLessThanOrEqual(near / (WW - 1) + 1e-5);
  });

  it('JPEG baseline (4.50), 8-bit, encapsulated from a sharp JPEG, matches a reference decode', async () => {
    const v8 = ramp(W, H, 256);
    const jpeg = await sharp(Buffer.from(v8), { raw: { width: W, height: H, channels: 1 } }).jpeg({ quality: 95 }).toBuffer();
    // JPEG is lossy: the reference is libvips' own decode of the same code stream.
    const reference = await sharp(jpeg).toColourspace('b-w').raw().toBuffer();
    const bytes = writeDicom(TS.jpegBaseline, imageElements({ rows: H, cols: W, bitsAllocated: 8, extra: [[0x0028, 0x1050, 'DS', '128'], [0x0028, 0x1051, 'DS', '256']] }), { fragments: [jpeg] });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(reference[i] ?? 0, 128, 256))).toBeLessThanOrEqual(1 / 255 + 1e-5);
    expect(r.metadata.dicom?.transferSyntax).toBe(TS.jpegBaseline);
  });

  it('JPEG baseline split over several fragments', async () => {
    const v8 = ramp(W, H, 256);
    const jpeg = await sharp(Buffer.from(v8), { raw: { width: W, height: H, channels: 1 } }).jpeg({ quality: 100 }).toBuffer();
    const half = Math.floor(jpeg.length / 2) & ~1;
    const bytes = writeDicom(TS.jpegBaseline, imageElements({ rows: H, cols: W, bitsAllocated: 8 }), { fragments: [jpeg.subarray(0, half), jpeg.subarray(half)] });
    const r = await preprocessImage(bytes, NATIVE);
    expect(r.metadata.quality.blank).toBe(false);
    expect(r.metadata.quality.warnings).toContain('auto-window');
  });

  it('RLE with 8-bit samples and with 3-sample RGB', async () => {
    const v8 = ramp(W, H, 256);
    const grey = writeDicom(TS.rle, imageElements({ rows: H, cols: W, bitsAllocated: 8, extra: [[0x0028, 0x1050, 'DS', '127.5'], [0x0028, 0x1051, 'DS', '256']] }), { fragments: [rleEncode(v8, W * H, 1, 1)] });
    const g = await preprocessImage(grey, NATIVE);
    expect(maxError(g.pixels, (i) => linearWindow(v8[i] ?? 0, 127.5, 256))).toBeLessThan(1e-5);

    const rgb: number[] = [];
    for (const v of v8) rgb.push(v, 0, 0);
    const colour = writeDicom(TS.rle, imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'RGB' }), { fragments: [rleEncode(rgb, W * H, 3, 1)] });
    const c = await preprocessImage(colour, NATIVE);
    expect(maxError(c.pixels, (i) => (0.299 * (v8[i] ?? 0)) / 255)).toBeLessThan(1e-5);
    expect(c.metadata.quality.warnings).toContain('colour-converted-to-grey');
  });

  it('native RGB, planar configuration 1', async () => {
    const n = W * H;
    const planes = Buffer.alloc(n * 3);
    for (let i = 0; i < n; i++) planes[n + i] = 200; // green plane only
    const bytes = writeDicom(TS.explicitLE, imageElements({ rows: H, cols: W, bitsAllocated: 8, samplesPerPixel: 3, planar: 1, photometric: 'RGB' }), { native: planes, vr: 'OB' });
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
      imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 1, extra: [[0x0028, 0x1050, 'DS', '40'], [0x0028, 0x1051, 'DS', '400'], [0x0028, 0x1052, 'DS', '-1024'], [0x0028, 0x1053, 'DS', '2']] }),
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
    const extra: DicomElement[] = [[0x0028, 0x1050, 'DS', '0'], [0x0028, 0x1051, 'DS', '4096']];
    for (const ts of [TS.explicitLE, TS.explicitBE, TS.rle]) {
      const pixels = ts === TS.rle ? { fragments: [rleEncode(words, W * H, 1, 2)] } : { native: le16(words) };
      const bytes = writeDicom(ts, imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, extra }), pixels);
      const r = await preprocessImage(bytes, NATIVE);
      expect(maxError(r.pixels, (i) => linearWindow(signed[i] ?? 0, 0, 4096))).toBeLessThan(1e-5);
    }
  });

  it('honours High Bit when the stored bits are not at the bottom of the word', async () => {
    const v = ramp(W, H, 1024); // 10 bits stored in bits 2..11
    const words = v.map((x) => x << 2 | 0x3);
    const bytes = writeDicom(TS.explicitLE, imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 10, highBit: 11, extra: [[0x0028, 0x1050, 'DS', '512'], [0x0028, 0x1051, 'DS', '1024']] }), { native: le16(words) });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(v[i] ?? 0, 512, 1024))).toBeLessThan(1e-5);
  });

  it('signed JPEG 2000 keeps its sign', async () => {
    const signed = ramp(W, H, 4096, -2048);
    const raw = Buffer.alloc(W * H * 2);
    signed.forEach((v, i) => raw.writeInt16LE(v, i * 2));
    const extra: DicomElement[] = [[0x0028, 0x1050, 'DS', '0'], [0x0028, 0x1051, 'DS', '4096']];
    const bytes = writeDicom(TS.j2kLossless, imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, extra }), { fragments: [await j2kEncode(raw, W, H, 12, true)] });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => linearWindow(signed[i] ?? 0, 0, 4096))).toBeLessThan(1e-5);
  });

  it('MONOCHROME1 is inverted after windowing', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements({ ...attrs12, photometric: 'MONOCHROME1' }), { native: le16(values12) });
    const r = await preprocessImage(bytes, NATIVE);
    expect(maxError(r.pixels, (i) => 1 - expected12(i))).toBeLessThan(1e-5);
    expect(r.metadata.dicom?.photometricInterpretation).toBe('MONOCHROME1');
  });

  it('without a window uses the 0.5/99.5 percentiles', async () => {
    const n = W * H;
    const values = Array.from({ length: n }, (_, i) => 1000 + Math.round((i * 3000) / (n - 1))); // uniform 1000..4000
    values[0] = 60000; // one outlier does not set the window
    const bytes = writeDicom(TS.explicitLE, imageElements({ rows: H, cols: W, bitsAllocated: 16, bitsStored: 16 }), { native: le16(values) });
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
    const bytes = writeDicom(TS.explicitLE, imageElements(attrs12), { native: le16(new Array<number>(W * H).fill(3900)) });
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
    const bytes = writeDicom(TS.explicitLE, imageElements({ rows: N, cols: N, bitsAllocated: 8, extra: [[0x0028, 0x1050, 'DS', '127.5'], [0x0028, 0x1051, 'DS', '256']] }), { native: Buffer.from(seven), vr: 'OB' });
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
    for (const secret of [PATIENT.name, 'Doe', 'Secret', PATIENT.id, PATIENT.birth, PATIENT.accession, '1.2.3.4.5.6.7.8.9']) expect(json).not.toContain(secret);
  });
});

describe('DICOM codecs are reused and freed', () => {
  it('decodes the same JPEG-LS and JPEG 2000 frames repeatedly with stable results', async () => {
    const jls = writeDicom(TS.jpegLs, imageElements(attrs12), { fragments: [await jpegLsEncode(le16(values12), W, H, 12)] });
    const j2k = writeDicom(TS.j2kLossless, imageElements(attrs12), { fragments: [await j2kEncode(le16(values12), W, H, 12, false)] });
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
      const bytes = writeDicom(ts, imageElements(ts === TS.jpegBaseline ? { rows: H, cols: W, bitsAllocated: 8 } : attrs12), { fragments: [garbage] });
      await expect(preprocessImage(bytes, NATIVE)).rejects.toMatchObject({ code: 'decode-failed' });
    }
    // The codecs still work afterwards.
    const ok = writeDicom(TS.jpegLs, imageElements(attrs12), { fragments: [await jpegLsEncode(le16(values12), W, H, 12)] });
    expect(maxError((await preprocessImage(ok, NATIVE)).pixels, expected12)).toBeLessThan(1e-5);
  });

  it('rejections are ImageRejection instances', async () => {
    const bytes = writeDicom(TS.explicitLE, imageElements(attrs12));
    await expect(preprocessImage(bytes, NATIVE)).rejects.toBeInstanceOf(ImageRejection);
  });
});
