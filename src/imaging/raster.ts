/** Raster decoding through sharp (libvips), restricted to the formats sniffed from magic bytes. */
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';
import { ImageRejection, describeThrown } from './errors';
import { Gray } from './gray';
import { DecodableFormat, looksTruncated } from './sniff';

export interface DecodedRaster {
  image: Gray;
  source: { format: string; width: number; height: number; bitsPerSample?: number; channels?: number; pages?: number };
  warnings: string[];
}

const SHARP_FORMAT: Record<Exclude<DecodableFormat, 'dicom'>, string> = { png: 'png', jpeg: 'jpeg', webp: 'webp', tiff: 'tiff', gif: 'gif' };

const TRUNCATION_MESSAGES = /premature end|truncated|unexpected end|end of (file|data|stream)|not enough data|short read|out of data/i;

function rejectDecode(format: string, bytes: Buffer, e: unknown): ImageRejection {
  const msg = describeThrown(e);
  if (/pixel limit/i.test(msg)) return new ImageRejection('too-many-pixels', `${format} image exceeds the pixel limit: ${msg}`);
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
  reduceTo?: (width: number, height: number) => { width: number; height: number } | undefined,
): Promise<DecodedRaster> {
  // A PNG must end with IEND after whole chunks; libpng alone accepts a file cut after the last IDAT.
  if (format === 'png' && looksTruncated(bytes, 'png')) throw new ImageRejection('truncated', 'png data is truncated (chunk cut short or IEND missing)', { format });
  const sharpOpts: SharpOptions = { limitInputPixels: maxPixels, failOn: 'truncated', pages: 1, page: 0, sequentialRead: true };
  let meta: Metadata;
  try {
    // Header only; our own check below names the declared size. Decoding itself keeps sharp's limit.
    meta = await sharp(bytes, { ...sharpOpts, limitInputPixels: false }).metadata();
  } catch (e) {
    throw rejectDecode(format, bytes, e);
  }
  if (meta.format !== SHARP_FORMAT[format] && !(format === 'tiff' && meta.format === 'tiff')) {
    throw new ImageRejection('unsupported-format', `content sniffed as ${format} but decoder saw ${String(meta.format)}`, { format, decoder: String(meta.format) });
  }
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (width <= 0 || height <= 0) throw new ImageRejection('decode-failed', `${format} header declares no dimensions`, { format });
  if (width * height > maxPixels) {
    throw new ImageRejection('too-many-pixels', `${format} declares ${width}x${height} = ${width * height} pixels, limit ${maxPixels}`, { width, height, maxPixels });
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
        const { data, info } = await base.toColourspace('b-w').raw({ depth: 'float' }).toBuffer({ resolveWithObject: true });
        const f = new Float32Array(data.buffer, data.byteOffset, info.width * info.height);
        let max = 0;
        for (const v of f) if (v > max) max = v;
        const out = new Float32Array(f.length);
        const scale = max > 1 ? 1 / max : 1;
        for (let i = 0; i < f.length; i++) out[i] = Math.min(1, Math.max(0, (f[i] ?? 0) * scale));
        image = { width: info.width, height: info.height, data: out };
      } else if (wide) {
        const { data, info } = await base.toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
        const u = new Uint16Array(data.buffer, data.byteOffset, info.width * info.height * info.channels);
        const out = new Float32Array(info.width * info.height);
        for (let i = 0; i < out.length; i++) out[i] = (u[i * info.channels] ?? 0) / 65535;
        image = { width: info.width, height: info.height, data: out };
      } else {
        const { data, info } = await base.toColourspace('b-w').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
        const out = new Float32Array(info.width * info.height);
        for (let i = 0; i < out.length; i++) out[i] = (data[i * info.channels] ?? 0) / 255;
        image = { width: info.width, height: info.height, data: out };
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
      const max = wide ? 65535 : 255;
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
        const g = px[i * c + 1] ?? 0;
        const b = px[i * c + 2] ?? 0;
        const a = (px[i * c + c - 1] ?? 0) / max;
        const l = r === g && g === b ? r / max : encode(0.2126 * (toLinear[r] ?? 0) + 0.7152 * (toLinear[g] ?? 0) + 0.0722 * (toLinear[b] ?? 0));
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
      image = { width: info.width, height: info.height, data: lum };
    }
  } catch (e) {
    if (e instanceof ImageRejection) throw e;
    throw rejectDecode(format, bytes, e);
  }
  return {
    image,
    source: { format, width, height, bitsPerSample, channels: meta.channels, ...(meta.pages !== undefined ? { pages: meta.pages } : {}) },
    warnings,
  };
}
