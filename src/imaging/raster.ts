/**
 * Raster decoding through sharp (libvips), restricted to the formats sniffed from magic bytes.
 * Plain PNGs (8/16-bit grey, grey+alpha, RGBA, neutral RGB; see png.ts) skip sharp: they are
 * decoded in TypeScript to the very samples sharp would hand over, and converted to grey by the
 * same code below, so the result is identical; anything else, including every malformed PNG, goes
 * through sharp.
 */
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';
import { ImageRejection, describeThrown } from './errors';
import { Gray } from './gray';
import { PlainPng, ReduceTo, decodePlainPng } from './png';
import { DecodableFormat, looksTruncated } from './sniff';

export interface DecodedRaster {
  image: Gray;
  source: { format: string; width: number; height: number; bitsPerSample?: number; channels?: number; pages?: number };
  warnings: string[];
}

const SHARP_FORMAT: Record<Exclude<DecodableFormat, 'dicom'>, string> = {
  png: 'png',
  jpeg: 'jpeg',
  webp: 'webp',
  tiff: 'tiff',
  gif: 'gif',
};

const TRUNCATION_MESSAGES =
  /premature end|truncated|unexpected end|end of (file|data|stream)|not enough data|short read|out of data/i;

let pngFastPath = true;

/** Test hook, not API: false makes every PNG go through sharp, to compare the fast path with it. */
export function setPngFastPathForTests(enabled: boolean): void {
  pngFastPath = enabled;
}

/** Channel 0 of `n` pixels of `c` interleaved samples, divided by `max`. */
function firstChannel(px: ArrayLike<number>, n: number, c: number, max: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (px[i * c] ?? 0) / max;
  return out;
}

/**
 * Grey of `n` pixels of grey+alpha (c = 2) or RGB(A) (c = 4) samples in [0, max], with the alpha
 * flattened onto the background that keeps the ink visible; pushes the warning saying which.
 */
function flattenAlpha(px: ArrayLike<number>, n: number, c: number, max: number, warnings: string[]): Float32Array {
  const grey = c < 3;
  // Relative luminance in linear light, re-encoded as sRGB (what libvips' b-w conversion does).
  const toLinear = new Float32Array(max + 1);
  for (let v = 0; v <= max; v++) {
    const c = v / max;
    toLinear[v] = c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }
  const encode = (y: number): number => (y <= 0.0031308 ? 12.92 * y : 1.055 * y ** (1 / 2.4) - 0.055);
  const lum = new Float32Array(n);
  const alpha = new Float32Array(n);
  let opaqueSum = 0;
  let opaqueCount = 0;
  let transparent = 0;
  for (let i = 0; i < n; i++) {
    const r = px[i * c] ?? 0;
    const g = grey ? r : (px[i * c + 1] ?? 0);
    const b = grey ? r : (px[i * c + 2] ?? 0);
    const a = (px[i * c + c - 1] ?? 0) / max;
    const l =
      r === g && g === b
        ? r / max
        : encode(0.2126 * (toLinear[r] ?? 0) + 0.7152 * (toLinear[g] ?? 0) + 0.0722 * (toLinear[b] ?? 0));
    lum[i] = l;
    alpha[i] = a;
    if (a >= 0.5) {
      opaqueSum += l;
      opaqueCount++;
    }
    if (a < 0.5) transparent++;
  }
  const bg = transparent > 0 && opaqueCount > 0 && opaqueSum / opaqueCount > 0.5 ? 0 : 1;
  if (transparent > 0) warnings.push(bg === 1 ? 'alpha-flattened-on-white' : 'alpha-flattened-on-black');
  for (let i = 0; i < n; i++) {
    const a = alpha[i] ?? 1;
    lum[i] = (lum[i] ?? 0) * a + bg * (1 - a);
  }
  return lum;
}

/** What the sharp path gives for a PNG it would decode to `png`'s samples. */
function fromPlainPng(png: PlainPng): DecodedRaster {
  const { width, height, bitDepth, channels, samples } = png;
  const max = bitDepth === 16 ? 65535 : 255;
  const warnings: string[] = [];
  const hasAlpha = channels === 2 || channels === 4;
  const data = hasAlpha
    ? flattenAlpha(samples, width * height, channels, max, warnings)
    : firstChannel(samples, width * height, channels, max);
  return {
    image: { width, height, data },
    source: { format: 'png', width, height, bitsPerSample: bitDepth, channels },
    warnings,
  };
}

function rejectDecode(format: string, bytes: Buffer, e: unknown): ImageRejection {
  const msg = describeThrown(e);
  if (/pixel limit/i.test(msg))
    return new ImageRejection('too-many-pixels', `${format} image exceeds the pixel limit: ${msg}`);
  if (format !== 'dicom' && (looksTruncated(bytes, format as DecodableFormat) || TRUNCATION_MESSAGES.test(msg))) {
    return new ImageRejection('truncated', `${format} data is truncated: ${msg}`, { format });
  }
  return new ImageRejection('decode-failed', `${format} could not be decoded: ${msg}`, { format });
}

/**
 * Decodes the first page/frame of a PNG, JPEG (RGB, grey or CMYK), WebP, TIFF or GIF into grey
 * values in [0, 1]. EXIF orientation is applied. Alpha is flattened onto the background that keeps
 * the ink visible: white unless the opaque pixels are mostly light (light ink on transparency), then
 * black. 16-bit inputs keep 16-bit precision (divided by 65535).
 */
export async function decodeRaster(
  bytes: Buffer,
  format: Exclude<DecodableFormat, 'dicom'>,
  maxPixels: number,
  /** Optional reduction done by libvips while decoding (antialiased, linear kernel): display width x height wanted. */
  reduceTo?: ReduceTo,
): Promise<DecodedRaster> {
  if (format === 'png') {
    // A PNG must end with IEND after whole chunks; libpng alone accepts a file cut after the last IDAT.
    if (looksTruncated(bytes, 'png'))
      throw new ImageRejection('truncated', 'png data is truncated (chunk cut short or IEND missing)', { format });
    const plain = pngFastPath ? decodePlainPng(bytes, maxPixels, reduceTo) : undefined;
    if (plain) return fromPlainPng(plain);
  }
  const sharpOpts: SharpOptions = {
    limitInputPixels: maxPixels,
    failOn: 'truncated',
    pages: 1,
    page: 0,
    sequentialRead: true,
  };
  let meta: Metadata;
  try {
    // Header only; our own check below names the declared size. Decoding itself keeps sharp's limit.
    meta = await sharp(bytes, { ...sharpOpts, limitInputPixels: false }).metadata();
  } catch (e) {
    throw rejectDecode(format, bytes, e);
  }
  if (meta.format !== SHARP_FORMAT[format] && !(format === 'tiff' && meta.format === 'tiff')) {
    throw new ImageRejection(
      'unsupported-format',
      `content sniffed as ${format} but decoder saw ${String(meta.format)}`,
      { format, decoder: String(meta.format) },
    );
  }
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (width <= 0 || height <= 0)
    throw new ImageRejection('decode-failed', `${format} header declares no dimensions`, { format });
  if (width * height > maxPixels) {
    throw new ImageRejection(
      'too-many-pixels',
      `${format} declares ${width}x${height} = ${width * height} pixels, limit ${maxPixels}`,
      { width, height, maxPixels },
    );
  }
  const depth = meta.depth ?? 'uchar';
  const wide = depth === 'ushort' || depth === 'short';
  const exotic = !wide && depth !== 'uchar' && depth !== 'char';
  const hasAlpha = meta.hasAlpha === true;
  const bitsPerSample = wide ? 16 : exotic ? 32 : 8;
  const warnings: string[] = [];
  if ((meta.pages ?? 1) > 1) warnings.push('multi-page');

  let image: Gray;
  try {
    let base = sharp(bytes, sharpOpts).rotate();
    const swapped = (meta.orientation ?? 1) >= 5; // EXIF 5-8: displayed rotated by 90 degrees
    const target = reduceTo?.(swapped ? height : width, swapped ? width : height);
    if (target && target.width * target.height < width * height) {
      base = base.resize(target.width, target.height, { fit: 'fill', kernel: 'linear' });
    }
    if (!hasAlpha) {
      if (exotic) {
        const { data, info } = await base
          .toColourspace('b-w')
          .raw({ depth: 'float' })
          .toBuffer({ resolveWithObject: true });
        const f = new Float32Array(data.buffer, data.byteOffset, info.width * info.height);
        let max = 0;
        for (const v of f) if (v > max) max = v;
        const out = new Float32Array(f.length);
        const scale = max > 1 ? 1 / max : 1;
        for (let i = 0; i < f.length; i++) out[i] = Math.min(1, Math.max(0, (f[i] ?? 0) * scale));
        image = { width: info.width, height: info.height, data: out };
      } else if (wide) {
        const { data, info } = await base
          .toColourspace('grey16')
          .raw({ depth: 'ushort' })
          .toBuffer({ resolveWithObject: true });
        const u = new Uint16Array(data.buffer, data.byteOffset, info.width * info.height * info.channels);
        image = {
          width: info.width,
          height: info.height,
          data: firstChannel(u, info.width * info.height, info.channels, 65535),
        };
      } else {
        const { data, info } = await base
          .toColourspace('b-w')
          .raw({ depth: 'uchar' })
          .toBuffer({ resolveWithObject: true });
        image = {
          width: info.width,
          height: info.height,
          data: firstChannel(data, info.width * info.height, info.channels, 255),
        };
      }
    } else {
      const { data, info } = await base
        .toColourspace(wide ? 'rgb16' : 'srgb')
        .ensureAlpha()
        .raw({ depth: wide ? 'ushort' : 'uchar' })
        .toBuffer({ resolveWithObject: true });
      const n = info.width * info.height;
      const c = info.channels;
      const px: ArrayLike<number> = wide ? new Uint16Array(data.buffer, data.byteOffset, n * c) : data;
      image = { width: info.width, height: info.height, data: flattenAlpha(px, n, c, wide ? 65535 : 255, warnings) };
    }
  } catch (e) {
    if (e instanceof ImageRejection) throw e;
    throw rejectDecode(format, bytes, e);
  }
  return {
    image,
    source: {
      format,
      width,
      height,
      bitsPerSample,
      channels: meta.channels,
      ...(meta.pages !== undefined ? { pages: meta.pages } : {}),
    },
    warnings,
  };
}
