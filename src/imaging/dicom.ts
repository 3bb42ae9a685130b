/**
 * DICOM Part 10 decoding: dicom-parser for the data set, our RLE decoder and the WASM/JS codecs for
 * compressed frames. Only the first frame is decoded. The result is a grey image in [0, 1] after
 * Modality LUT (rescale slope/intercept), VOI LUT (window or robust percentiles) and MONOCHROME1
 * inversion, plus a few non-identifying attributes.
 */
import * as dicomParser from 'dicom-parser';
import { endianness } from 'node:os';
import { inflateRawSync } from 'node:zlib';
import { CodecError, DecodedFrame, decodeJpeg2000, decodeJpegBaseline, decodeJpegLossless, decodeJpegLs } from './codecs';
import { ImageRejection, describeThrown } from './errors';
import { Gray } from './gray';
import { RleError, decodeRleFrame } from './rle';

type Codec = 'native' | 'native-be' | 'rle' | 'jpeg-baseline' | 'jpeg-lossless' | 'jpeg-ls' | 'jpeg2000';

/** Transfer syntaxes this module decodes. */
export const SUPPORTED_TRANSFER_SYNTAXES: Readonly<Record<string, { name: string; codec: Codec }>> = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1.99': { name: 'Deflated Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian', codec: 'native-be' },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', codec: 'rle' },
  '1.2.840.10008.1.2.4.50': { name: 'JPEG Baseline (Process 1)', codec: 'jpeg-baseline' },
  '1.2.840.10008.1.2.4.51': { name: 'JPEG Extended (Process 2 & 4), 8-bit only', codec: 'jpeg-baseline' },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless, Non-Hierarchical (Process 14)', codec: 'jpeg-lossless' },
  '1.2.840.10008.1.2.4.70': { name: 'JPEG Lossless, Non-Hierarchical, First-Order Prediction', codec: 'jpeg-lossless' },
  '1.2.840.10008.1.2.4.80': { name: 'JPEG-LS Lossless', codec: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.81': { name: 'JPEG-LS Lossy (Near-Lossless)', codec: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.90': { name: 'JPEG 2000 (Lossless Only)', codec: 'jpeg2000' },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', codec: 'jpeg2000' },
};

/** Names of some syntaxes we recognise but do not decode (for clearer rejection messages). */
const KNOWN_UNSUPPORTED: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component (Lossless Only)',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component',
  '1.2.840.10008.1.2.4.94': 'JPIP Referenced',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile / Main Level',
  '1.2.840.10008.1.2.4.101': 'MPEG2 Main Profile / High Level',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264 High Profile',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible High Profile',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 (Lossless Only)',
  '1.2.840.10008.1.2.4.202': 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000',
};

export interface DicomDecoded {
  image: Gray;
  source: { format: string; width: number; height: number; bitsPerSample?: number; channels?: number; pages?: number };
  dicom: { modality?: string; photometricInterpretation?: string; transferSyntax: string; transferSyntaxName?: string; bitsStored?: number; pixelRepresentation?: number };
  warnings: string[];
}

function thrownText(e: unknown): string {
  if (e && typeof e === 'object' && 'exception' in e) return describeThrown((e as { exception: unknown }).exception);
  return describeThrown(e);
}

const OVERREAD = /past end|overread|buffer overrun|eof encountered|cannot be greater than or equal to/i;

function parse(bytes: Buffer, maxInflatedBytes: number): dicomParser.DataSet {
  const arr = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const inflater = (byteArray: Uint8Array, position: number): Uint8Array => {
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(byteArray.subarray(position), { maxOutputLength: maxInflatedBytes });
    } catch (e) {
      const msg = describeThrown(e);
      if (/maxOutputLength|Cannot create a Buffer larger/i.test(msg)) {
        throw new ImageRejection('too-large', `deflated DICOM inflates beyond ${maxInflatedBytes} bytes`, { maxInflatedBytes });
      }
      throw new ImageRejection(/unexpected end/i.test(msg) ? 'truncated' : 'decode-failed', `deflated DICOM data set could not be inflated: ${msg}`);
    }
    const full = new Uint8Array(position + inflated.length);
    full.set(byteArray.subarray(0, position), 0);
    full.set(inflated, position);
    return full;
  };
  try {
    return dicomParser.parseDicom(arr, { inflater: inflater as unknown as dicomParser.ParseDicomOptions['inflater'] });
  } catch (e) {
    if (e instanceof ImageRejection) throw e;
    if (e && typeof e === 'object' && 'exception' in e && (e as { exception: unknown }).exception instanceof ImageRejection) {
      throw (e as { exception: ImageRejection }).exception;
    }
    const msg = thrownText(e);
    if (OVERREAD.test(msg)) throw new ImageRejection('truncated', `DICOM file is truncated: ${msg}`);
    throw new ImageRejection('decode-failed', `DICOM file could not be parsed: ${msg}`);
  }
}

function str(ds: dicomParser.DataSet, tag: string): string | undefined {
  const v = ds.string(tag);
  return v === undefined || v === '' ? undefined : v.trim();
}

/** First value of a decimal string (DS) attribute; NaN-safe. */
function ds1(ds: dicomParser.DataSet, tag: string): number | undefined {
  const v = ds.floatString(tag, 0);
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}

function luminance(r: number, g: number, b: number): number {
  return 0.299 * r + 0.587 * g + 0.114 * b;
}

/** Quantile of a large array from a uniform sample of at most ~200k values. */
function sampledQuantiles(values: Float32Array, qs: readonly number[]): number[] {
  const stride = Math.max(1, Math.floor(values.length / 200_000));
  const sample = new Float32Array(Math.ceil(values.length / stride));
  for (let i = 0, k = 0; i < values.length; i += stride, k++) sample[k] = values[i] ?? 0;
  sample.sort();
  return qs.map((q) => sample[Math.min(sample.length - 1, Math.max(0, Math.round(q * (sample.length - 1))))] ?? 0);
}

export async function decodeDicom(bytes: Buffer, maxPixels: number): Promise<DicomDecoded> {
  // Inflation budget: the largest pixel data allowed (12 bytes per pixel: 3 samples x 32 bits) plus 16 MiB for the rest.
  const ds = parse(bytes, Math.min(2 ** 31 - 1, maxPixels * 12 + 16 * 1024 * 1024));
  const ts = str(ds, 'x00020010') ?? '';
  const tsInfo = SUPPORTED_TRANSFER_SYNTAXES[ts];
  const modality = str(ds, 'x00080060');
  const photometric = str(ds, 'x00280004')?.toUpperCase();
  const bitsStoredTag = ds.uint16('x00280101');
  const pixelRepresentationTag = ds.uint16('x00280103');
  const dicomMeta: DicomDecoded['dicom'] = {
    ...(modality ? { modality } : {}),
    ...(photometric ? { photometricInterpretation: photometric } : {}),
    transferSyntax: ts,
    ...(tsInfo ? { transferSyntaxName: tsInfo.name } : KNOWN_UNSUPPORTED[ts] ? { transferSyntaxName: KNOWN_UNSUPPORTED[ts] } : {}),
    ...(bitsStoredTag !== undefined ? { bitsStored: bitsStoredTag } : {}),
    ...(pixelRepresentationTag !== undefined ? { pixelRepresentation: pixelRepresentationTag } : {}),
  };

  const pixelEl = ds.elements['x7fe00010'];
  if (!pixelEl || (pixelEl.length === 0 && !pixelEl.encapsulatedPixelData)) {
    if (ds.elements['x7fe00008'] || ds.elements['x7fe00009']) {
      throw new ImageRejection('unsupported-format', 'DICOM Float/Double Float Pixel Data is not supported', { transferSyntax: ts });
    }
    throw new ImageRejection('dicom-no-pixel-data', `DICOM object has no Pixel Data (7FE0,0010)${modality ? ` (modality ${modality})` : ''}`, { transferSyntax: ts });
  }
  if (!tsInfo) {
    const name = KNOWN_UNSUPPORTED[ts];
    throw new ImageRejection('dicom-unsupported-transfer-syntax', `DICOM transfer syntax ${ts || '(missing)'}${name ? ` (${name})` : ''} is not supported`, { transferSyntax: ts });
  }

  const rows = ds.uint16('x00280010') ?? 0;
  const cols = ds.uint16('x00280011') ?? 0;
  const frames = Math.max(1, ds.intString('x00280008') ?? 1);
  const spp = ds.uint16('x00280002') ?? 1;
  const bitsAllocated = ds.uint16('x00280100') ?? 0;
  const bitsStored = bitsStoredTag ?? bitsAllocated;
  const highBit = ds.uint16('x00280102') ?? bitsStored - 1;
  const signed = pixelRepresentationTag === 1;
  const planar = ds.uint16('x00280006') ?? 0;
  if (rows <= 0 || cols <= 0) throw new ImageRejection('decode-failed', 'DICOM Pixel Data without valid Rows/Columns', { rows, cols });
  if (rows * cols * frames > maxPixels) {
    throw new ImageRejection('too-many-pixels', `DICOM declares ${cols}x${rows}x${frames} frames = ${rows * cols * frames} pixels, limit ${maxPixels}`, { width: cols, height: rows, frames, maxPixels });
  }
  if (spp !== 1 && spp !== 3) throw new ImageRejection('unsupported-format', `DICOM Samples per Pixel ${spp} not supported`, { samplesPerPixel: spp });
  if (![8, 16, 32].includes(bitsAllocated)) throw new ImageRejection('unsupported-format', `DICOM Bits Allocated ${bitsAllocated} not supported`, { bitsAllocated });
  if (bitsStored < 1 || bitsStored > bitsAllocated || highBit + 1 < bitsStored || highBit >= bitsAllocated) {
    throw new ImageRejection('decode-failed', `DICOM Bits Stored ${bitsStored} / High Bit ${highBit} inconsistent with Bits Allocated ${bitsAllocated}`);
  }
  if (photometric === 'PALETTE COLOR' || photometric === 'YBR_FULL_422' && tsInfo.codec !== 'jpeg-baseline') {
    throw new ImageRejection('unsupported-format', `DICOM Photometric Interpretation ${photometric} not supported for ${tsInfo.name}`, { photometricInterpretation: photometric });
  }
  const warnings: string[] = [];
  if (frames > 1) warnings.push('multi-frame');

  const arr = ds.byteArray;
  const n = rows * cols;
  // Stored values of frame 0, samples interleaved; `shift` only for native/RLE words.
  let samples: ArrayLike<number>;
  let shift = highBit + 1 - bitsStored;
  if (tsInfo.codec === 'native' || tsInfo.codec === 'native-be') {
    if (pixelEl.encapsulatedPixelData) throw new ImageRejection('decode-failed', 'encapsulated Pixel Data in a native transfer syntax');
    const bpp = bitsAllocated / 8;
    const frameBytes = n * spp * bpp;
    const available = arr.length - pixelEl.dataOffset;
    if (pixelEl.dataOffset + pixelEl.length > arr.length || available < frameBytes) {
      throw new ImageRejection('truncated', `DICOM Pixel Data holds ${Math.max(0, Math.min(available, pixelEl.length))} bytes, expected ${frameBytes * frames}`, { expected: frameBytes * frames, available: Math.max(0, available) });
    }
    if (pixelEl.length < frameBytes) throw new ImageRejection('decode-failed', `DICOM Pixel Data length ${pixelEl.length} is smaller than one frame (${frameBytes})`);
    // Copy frame 0 into an aligned typed array in host order (a memcpy plus, for big endian, a swap).
    const raw = Buffer.from(arr.buffer, arr.byteOffset + pixelEl.dataOffset, frameBytes);
    const copy = Buffer.alloc(frameBytes);
    raw.copy(copy);
    const hostLE = endianness() === 'LE';
    const fileLE = tsInfo.codec === 'native';
    if (bpp > 1 && hostLE !== fileLE) {
      if (bpp === 2) copy.swap16();
      else copy.swap32();
    }
    const out = bpp === 1 ? new Uint8Array(copy.buffer, copy.byteOffset, frameBytes) : bpp === 2 ? new Uint16Array(copy.buffer, copy.byteOffset, frameBytes / 2) : new Uint32Array(copy.buffer, copy.byteOffset, frameBytes / 4);
    samples = out;
    if (spp === 3 && planar === 1) samples = interleave(out, n);
  } else {
    const frame = encapsulatedFrame(ds, pixelEl, frames, tsInfo.codec);
    let decoded: DecodedFrame | undefined;
    try {
      switch (tsInfo.codec) {
        case 'rle': {
          samples = decodeRleFrame(frame, rows, cols, spp, bitsAllocated);
          break;
        }
        case 'jpeg-baseline':
          if (bitsStored > 8) throw new ImageRejection('dicom-unsupported-transfer-syntax', `DICOM transfer syntax ${ts} with ${bitsStored}-bit samples (12-bit JPEG) is not supported`, { transferSyntax: ts, bitsStored });
          decoded = await decodeJpegBaseline(frame);
          break;
        case 'jpeg-lossless':
          decoded = decodeJpegLossless(frame, bitsAllocated, n);
          break;
        case 'jpeg-ls':
          decoded = await decodeJpegLs(frame, bitsStored, signed);
          break;
        case 'jpeg2000':
          decoded = await decodeJpeg2000(frame, bitsStored, signed);
          break;
      }
    } catch (e) {
      if (e instanceof ImageRejection) throw e;
      if (e instanceof CodecError || e instanceof RleError) throw new ImageRejection('decode-failed', `DICOM ${tsInfo.name} frame could not be decoded: ${e.message}`, { transferSyntax: ts });
      throw e;
    }
    if (decoded) {
      shift = 0;
      if (decoded.width !== cols || decoded.height !== rows) {
        throw new ImageRejection('decode-failed', `decoded frame is ${decoded.width}x${decoded.height}, DICOM says ${cols}x${rows}`, { transferSyntax: ts });
      }
      if (decoded.components === 3 && spp === 1) {
        // libjpeg-turbo returns 3 equal channels for grey JPEG: keep the first.
        const s = decoded.samples;
        const g = new Float64Array(n);
        for (let i = 0; i < n; i++) g[i] = s[i * 3] ?? 0;
        samples = g;
      } else if (decoded.components !== spp) {
        throw new ImageRejection('decode-failed', `decoded frame has ${decoded.components} components, DICOM says ${spp}`, { transferSyntax: ts });
      } else {
        samples = decoded.samples;
      }
    }
  }
  // TypeScript cannot see that every branch assigned `samples`.
  const stored = samples!;

  const maxStored = 2 ** bitsStored;
  const mask = maxStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  const storedValue = (raw: number): number => {
    // Arithmetic rather than bit operations so that 32-bit words work too.
    let v = Math.floor(raw / 2 ** shift) % maxStored;
    if (v < 0) v += maxStored; // codecs return signed samples as negative numbers
    if (signed && v >= signBit) v -= maxStored;
    return v;
  };

  const out = new Float32Array(n);
  if (spp === 3) {
    // Colour: luminance of R,G,B (or Y of YBR_FULL), scaled by the sample range; no VOI.
    const ybr = photometric === 'YBR_FULL' && (tsInfo.codec === 'native' || tsInfo.codec === 'native-be' || tsInfo.codec === 'rle');
    const scale = 1 / mask;
    for (let i = 0; i < n; i++) {
      const r = storedValue(stored[i * 3] ?? 0);
      out[i] = ybr ? r * scale : luminance(r, storedValue(stored[i * 3 + 1] ?? 0), storedValue(stored[i * 3 + 2] ?? 0)) * scale;
    }
    warnings.push('colour-converted-to-grey');
    return finish(out);
  }

  // Modality LUT.
  const slope = ds1(ds, 'x00281053') ?? 1;
  const intercept = ds1(ds, 'x00281052') ?? 0;
  if (bitsStored < 32) {
    // Integer fast path: >>> also maps codecs' negative (signed) samples to their bit patterns.
    for (let i = 0; i < n; i++) {
      let v = ((stored[i] ?? 0) >>> shift) & mask;
      if (signed && v >= signBit) v -= maxStored;
      out[i] = v * slope + intercept;
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = storedValue(stored[i] ?? 0) * slope + intercept;
  }

  // VOI LUT.
  const wc = ds1(ds, 'x00281050');
  const ww = ds1(ds, 'x00281051');
  const voiFunction = str(ds, 'x00281056')?.toUpperCase() ?? 'LINEAR';
  if (wc !== undefined && ww !== undefined && ww > 0) {
    applyWindow(out, wc, ww, voiFunction);
  } else {
    const [lo = 0, hi = 0] = sampledQuantiles(out, [0.005, 0.995]);
    if (hi > lo) {
      const inv = 1 / (hi - lo);
      for (let i = 0; i < n; i++) out[i] = Math.min(1, Math.max(0, ((out[i] ?? 0) - lo) * inv));
    } else {
      out.fill(0);
    }
    warnings.push('auto-window');
  }
  if (photometric === 'MONOCHROME1') for (let i = 0; i < n; i++) out[i] = 1 - (out[i] ?? 0);
  return finish(out);

  function finish(data: Float32Array): DicomDecoded {
    return {
      image: { width: cols, height: rows, data },
      source: { format: 'dicom', width: cols, height: rows, bitsPerSample: bitsStored, channels: spp, ...(frames > 1 ? { pages: frames } : {}) },
      dicom: dicomMeta,
      warnings,
    };
  }
}

/**
 * VOI LUT function of PS3.3 C.11.2.1.2 mapped to [0, 1]: LINEAR (the default), LINEAR_EXACT, SIGMOID.
 */
export function applyWindow(values: Float32Array, c: number, w: number, fn: string): void {
  const n = values.length;
  if (fn === 'SIGMOID') {
    for (let i = 0; i < n; i++) values[i] = 1 / (1 + Math.exp((-4 * ((values[i] ?? 0) - c)) / w));
  } else if (fn === 'LINEAR_EXACT') {
    for (let i = 0; i < n; i++) values[i] = Math.min(1, Math.max(0, ((values[i] ?? 0) - c) / w + 0.5));
  } else if (w <= 1) {
    for (let i = 0; i < n; i++) values[i] = (values[i] ?? 0) > c - 0.5 ? 1 : 0;
  } else {
    const lower = c - 0.5 - (w - 1) / 2;
    const upper = c - 0.5 + (w - 1) / 2;
    for (let i = 0; i < n; i++) {
      const x = values[i] ?? 0;
      values[i] = x <= lower ? 0 : x > upper ? 1 : (x - (c - 0.5)) / (w - 1) + 0.5;
    }
  }
}

function interleave(planes: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = planes[i] ?? 0;
    out[i * 3 + 1] = planes[n + i] ?? 0;
    out[i * 3 + 2] = planes[2 * n + i] ?? 0;
  }
  return out;
}

/** Bytes of frame 0 of encapsulated Pixel Data, with truncation checks on every fragment. */
function encapsulatedFrame(ds: dicomParser.DataSet, el: dicomParser.Element, frames: number, codec: Codec): Uint8Array {
  if (!el.encapsulatedPixelData) throw new ImageRejection('decode-failed', 'compressed transfer syntax but Pixel Data is not encapsulated');
  const frags = el.fragments ?? [];
  const len = ds.byteArray.length;
  if (frags.length === 0) throw new ImageRejection('truncated', 'encapsulated Pixel Data has no fragments');
  for (const f of frags) {
    if (f.position + f.length > len) throw new ImageRejection('truncated', `encapsulated Pixel Data fragment runs past the end of the file (${f.position + f.length} > ${len})`);
  }
  try {
    let frame: Uint8Array;
    if (el.basicOffsetTable && el.basicOffsetTable.length > 0) frame = dicomParser.readEncapsulatedImageFrame(ds, el, 0);
    else if (frames === 1) frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, frags.length);
    else if (frags.length === frames) frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, 1);
    else if (codec === 'jpeg-baseline' || codec === 'jpeg-lossless') {
      frame = dicomParser.readEncapsulatedImageFrame(ds, el, 0, dicomParser.createJPEGBasicOffsetTable(ds, el));
    } else throw new Error('cannot locate frame 0: no Basic Offset Table and fragments do not map to frames');
    return frame;
  } catch (e) {
    throw new ImageRejection('decode-failed', `encapsulated Pixel Data could not be read: ${thrownText(e)}`);
  }
}
