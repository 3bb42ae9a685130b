/**
 * Fast path for plain PNGs: chunk stream, CRC-32, inflate (node:zlib) and unfiltering in
 * TypeScript, with no sharp/libvips call. decodeRaster uses it only where the samples it returns
 * are exactly what the sharp path would convert; for anything else `decodePlainPng` returns
 * undefined and the caller decodes with sharp, which also produces every rejection (truncated,
 * too-many-pixels, decode-failed) with its usual code and message.
 *
 * Taken (non-interlaced, bit depth 8 or 16, every CRC right, IDAT chunks consecutive and inflating
 * to exactly the image size with no data after the zlib stream, IEND last with nothing after it):
 *  - grey (colour type 0) and grey+alpha (4);
 *  - RGBA (6);
 *  - RGB (2) only when every pixel has R = G = B: libvips' b-w/grey16 conversion of such pixels
 *    is the identity (checked for all 256 and all 65536 values), which is not so for colour.
 * Ancillary chunks taken: pHYs, tIME, tEXt (well-formed, pHYs before IDAT, each of pHYs/tIME
 * once); they never change the pixels. Every other chunk means sharp: palette (PLTE), tRNS (sharp
 * adds alpha), eXIf (orientation), iCCP, gAMA, cHRM, sRGB, sBIT (colour management: sharp ignores
 * them today for this conversion, but they are not ours to judge), zTXt/iTXt, bKGD, APNG, ...
 * Also sharp: bit depths 1/2/4, interlacing, a size over `maxPixels` or 10^7 px on a side, and a
 * `reduceTo` asking for fewer pixels (resizing stays in libvips).
 */
import { endianness } from 'node:os';
import * as zlib from 'node:zlib';

export interface PlainPng {
  width: number;
  height: number;
  bitDepth: 8 | 16;
  /** Samples per pixel: 1 grey, 2 grey+alpha, 3 RGB (all pixels R = G = B), 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** Interleaved samples, row-major, width * height * channels of them. */
  samples: Uint8Array | Uint16Array;
}

/** decodeRaster's optional reduction: display width x height wanted for a width x height image. */
export type ReduceTo = (width: number, height: number) => { width: number; height: number } | undefined;

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS: Partial<Record<number, PlainPng['channels']>> = { 0: 1, 2: 3, 4: 2, 6: 4 };
const LITTLE_ENDIAN = endianness() === 'LE';
/** Sides up to this were checked to decode in sharp as here; longer ones are left to sharp. */
const MAX_SIDE = 10_000_000;

/** Ancillary chunks that never change the decoded pixels, with their well-formedness check. */
const HARMLESS: Partial<Record<string, { once: boolean; ok: (data: Buffer, beforeIdat: boolean) => boolean }>> = {
  pHYs: { once: true, ok: (d, beforeIdat) => beforeIdat && d.length === 9 && (d[8] === 0 || d[8] === 1) },
  tIME: { once: true, ok: (d) => d.length === 7 },
  tEXt: {
    once: false,
    ok: (d) => {
      const nul = d.indexOf(0);
      return nul >= 1 && nul <= 79;
    },
  },
};

interface Header {
  width: number;
  height: number;
  bitDepth: 8 | 16;
  channels: PlainPng['channels'];
}

function readHeader(d: Buffer): Header | undefined {
  if (d.length !== 13) return undefined;
  const width = d.readUInt32BE(0);
  const height = d.readUInt32BE(4);
  const bitDepth = d[8];
  const channels = CHANNELS[d[9] ?? -1];
  const plain = d[10] === 0 && d[11] === 0 && d[12] === 0; // deflate, adaptive filtering, no interlace
  if (!plain || channels === undefined || (bitDepth !== 8 && bitDepth !== 16)) return undefined;
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) return undefined;
  return { width, height, bitDepth, channels };
}

/** Concatenated IDAT data of a regular chunk stream, or undefined for anything irregular or not plainly harmless. */
function readChunks(
  bytes: Buffer,
  maxPixels: number,
  reduceTo: ReduceTo | undefined,
): { header: Header; idat: Buffer } | undefined {
  // zlib.crc32 arrived in Node 20.15; without it, sharp.
  if (
    typeof zlib.crc32 !== 'function' ||
    bytes.length < SIGNATURE.length ||
    !bytes.subarray(0, SIGNATURE.length).equals(SIGNATURE)
  )
    return undefined;
  let header: Header | undefined;
  const idat: Buffer[] = [];
  let idatState: 'before' | 'in' | 'after' = 'before';
  const seen = new Set<string>();
  for (let p = SIGNATURE.length; ;) {
    if (p + 12 > bytes.length) return undefined;
    const len = bytes.readUInt32BE(p);
    const end = p + 12 + len;
    if (len > 0x7fffffff || end > bytes.length) return undefined;
    if (zlib.crc32(bytes.subarray(p + 4, p + 8 + len)) !== bytes.readUInt32BE(p + 8 + len)) return undefined;
    const type = bytes.toString('latin1', p + 4, p + 8);
    const data = bytes.subarray(p + 8, p + 8 + len);
    if (header === undefined) {
      // IHDR first; the size checks come before any pixel work.
      header = type === 'IHDR' ? readHeader(data) : undefined;
      if (header === undefined) return undefined;
      const { width, height } = header;
      if (width * height > maxPixels) return undefined;
      const target = reduceTo?.(width, height);
      if (target && target.width * target.height < width * height) return undefined;
    } else if (type === 'IDAT') {
      if (idatState === 'after') return undefined;
      idatState = 'in';
      idat.push(data);
    } else if (type === 'IEND') {
      return len === 0 && end === bytes.length && idat.length > 0
        ? { header, idat: idat.length === 1 ? (idat[0] as Buffer) : Buffer.concat(idat) }
        : undefined;
    } else {
      const rule = HARMLESS[type];
      if (!rule || !rule.ok(data, idatState === 'before') || (rule.once && seen.has(type))) return undefined;
      seen.add(type);
      if (idatState === 'in') idatState = 'after';
    }
    p = end;
  }
}

/** Inflates exactly `expected` bytes, all of the zlib stream and nothing after it; undefined otherwise. */
function inflateExactly(data: Buffer, expected: number): Buffer | undefined {
  try {
    // `info` gives the engine, whose bytesWritten is the input consumed up to the end of the stream.
    const r = zlib.inflateSync(data, { info: true, maxOutputLength: expected }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    return r.buffer.length === expected && r.engine.bytesWritten === data.length ? r.buffer : undefined;
  } catch {
    return undefined; // corrupt stream, bad Adler-32, too much data: sharp says what is wrong
  }
}

/**
 * Reverses the per-row filters (PNG spec 9.2: None, Sub, Up, Average, Paeth) in place; `bpp` is the
 * filter unit in bytes. False on an unknown filter type.
 */
function unfilter(d: Buffer, height: number, rowBytes: number, bpp: number): boolean {
  const stride = rowBytes + 1;
  const zeros = new Uint8Array(rowBytes);
  for (let y = 0; y < height; y++) {
    const row = y * stride + 1;
    // The row above, or zeros for the first row.
    const up: Uint8Array = y > 0 ? d : zeros;
    const u = y > 0 ? row - stride : 0;
    switch (d[row - 1]) {
      case 0:
        break;
      case 1:
        for (let i = bpp; i < rowBytes; i++) d[row + i] = (d[row + i] ?? 0) + (d[row + i - bpp] ?? 0);
        break;
      case 2:
        for (let i = 0; i < rowBytes; i++) d[row + i] = (d[row + i] ?? 0) + (up[u + i] ?? 0);
        break;
      case 3:
        for (let i = 0; i < rowBytes; i++)
          d[row + i] = (d[row + i] ?? 0) + (((i >= bpp ? (d[row + i - bpp] ?? 0) : 0) + (up[u + i] ?? 0)) >> 1);
        break;
      case 4:
        for (let i = 0; i < rowBytes; i++) {
          const a = i >= bpp ? (d[row + i - bpp] ?? 0) : 0;
          const b = up[u + i] ?? 0;
          const c = i >= bpp ? (up[u + i - bpp] ?? 0) : 0;
          const pa = Math.abs(b - c); // |p - a| with p = a + b - c
          const pb = Math.abs(a - c);
          const pc = Math.abs(a + b - 2 * c);
          d[row + i] = (d[row + i] ?? 0) + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
        }
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Samples without the filter bytes; 16-bit samples are big endian in the file. */
function samplesOf(d: Buffer, h: Header, rowBytes: number): Uint8Array | Uint16Array {
  const count = h.width * h.channels * h.height;
  const out = h.bitDepth === 8 ? new Uint8Array(count) : new Uint16Array(count);
  const bytes = Buffer.from(out.buffer);
  for (let y = 0; y < h.height; y++) d.copy(bytes, y * rowBytes, y * (rowBytes + 1) + 1, (y + 1) * (rowBytes + 1));
  if (h.bitDepth === 16 && LITTLE_ENDIAN) bytes.swap16();
  return out;
}

function allNeutral(s: Uint8Array | Uint16Array): boolean {
  for (let i = 0; i < s.length; i += 3) if (s[i] !== s[i + 1] || s[i] !== s[i + 2]) return false;
  return true;
}

/**
 * The samples of a plain PNG that the sharp path would decode to exactly the same grey values, or
 * undefined: decode it with sharp. `maxPixels` and `reduceTo` are decodeRaster's.
 */
export function decodePlainPng(bytes: Buffer, maxPixels: number, reduceTo?: ReduceTo): PlainPng | undefined {
  const chunks = readChunks(bytes, maxPixels, reduceTo);
  if (!chunks) return undefined;
  const { header, idat } = chunks;
  const bpp = (header.channels * header.bitDepth) / 8;
  const rowBytes = header.width * bpp;
  const inflated = inflateExactly(idat, header.height * (rowBytes + 1));
  if (!inflated || !unfilter(inflated, header.height, rowBytes, bpp)) return undefined;
  const samples = samplesOf(inflated, header, rowBytes);
  if (header.channels === 3 && !allNeutral(samples)) return undefined;
  return { width: header.width, height: header.height, bitDepth: header.bitDepth, channels: header.channels, samples };
}
