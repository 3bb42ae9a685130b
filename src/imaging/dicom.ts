/**
 * DICOM Part 10 decoding: dicom-parser for the data set, our RLE decoder and the WASM/JS codecs for
 * compressed frames. Only the first frame is decoded. The result is a grey image in [0, 1] after
 * Modality LUT (rescale slope/intercept), VOI LUT (window or robust percentiles) and MONOCHROME1
 * inversion (colour and palette data: luminance), plus a few non-identifying attributes.
 *
 * Stages: parse (meta information, data set as encoded) -> readLayout / validateLayout (Image Pixel
 * attributes, malformed values repaired with a warning) -> nativeFrame / encapsulatedFrameSamples
 * (frame 0's samples) -> colourToGrey / paletteToGrey / monochromeToGrey.
 */
import * as dicomParser from 'dicom-parser';
import { endianness } from 'node:os';
import { inflateRawSync } from 'node:zlib';
import {
  CodecError,
  DecodedFrame,
  decodeJpeg2000,
  decodeJpegBaseline,
  decodeJpegLossless,
  decodeJpegLs,
  jpegWithColourSpace,
} from './codecs';
import { ImageRejection, describeThrown } from './errors';
import { Gray } from './gray';
import { paletteLuminance } from './palette';
import { RleError, decodeRleFrame } from './rle';

type Codec =
  'native' | 'native-be' | 'rle' | 'deflate-frame' | 'jpeg-baseline' | 'jpeg-lossless' | 'jpeg-ls' | 'jpeg2000';

/** Transfer syntaxes this module decodes. */
export const SUPPORTED_TRANSFER_SYNTAXES: Readonly<Record<string, { name: string; codec: Codec }>> = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1.99': { name: 'Deflated Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian', codec: 'native-be' },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', codec: 'rle' },
  '1.2.840.10008.1.2.8.1': { name: 'Deflated Image Frame Compression', codec: 'deflate-frame' },
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
  dicom: {
    modality?: string;
    photometricInterpretation?: string;
    transferSyntax: string;
    transferSyntaxName?: string;
    bitsStored?: number;
    pixelRepresentation?: number;
  };
  warnings: string[];
}

function thrownText(e: unknown): string {
  if (e && typeof e === 'object' && 'exception' in e) return describeThrown(e.exception);
  return describeThrown(e);
}

/** dicom-parser's messages for an element, item or fragment that runs past the end of the bytes. */
const OVERREAD =
  /past end|overread|buffer overrun|eof encountered|cannot be greater than or equal to|invalid value for parameter 'maxP ?osition'/i;

const IMPLICIT_VR_LE = '1.2.840.10008.1.2';
const DEFLATED_LE = '1.2.840.10008.1.2.1.99';
const EXPLICIT_VR_BE = '1.2.840.10008.1.2.2';

/** Value representations of PS3.5 6.2: the two bytes after the tag of an explicit-VR element. */
const VRS: ReadonlySet<string> = new Set(
  'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '),
);

interface Parsed {
  ds: dicomParser.DataSet;
  warnings: string[];
}

/** Parses the data set; every failure becomes an ImageRejection (truncated, too-large or dicom-malformed). */
function parse(bytes: Buffer, maxInflatedBytes: number): Parsed {
  const arr = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    return parseDataSet(arr, maxInflatedBytes);
  } catch (e) {
    if (e instanceof ImageRejection) throw e;
    const msg = thrownText(e);
    if (OVERREAD.test(msg)) throw new ImageRejection('truncated', `DICOM file is truncated: ${msg}`);
    throw new ImageRejection('dicom-malformed', `DICOM data set could not be parsed: ${msg}`);
  }
}

/** dicom-parser's DataSet class: exported at run time, typed as an interface only. */
const DataSetClass = (
  dicomParser as unknown as {
    DataSet: new (
      parser: dicomParser.ByteArrayParser,
      byteArray: dicomParser.ByteArray,
      elements: Record<string, dicomParser.Element>,
    ) => dicomParser.DataSet;
  }
).DataSet;

/**
 * Reads the file meta information, inflates a deflated data set, and parses the data set as it is
 * encoded: some writers encode implicit VR under an explicit-VR transfer syntax (or the reverse), so
 * the first element decides, as reference readers do, with a warning.
 */
function parseDataSet(arr: Uint8Array, maxInflatedBytes: number): Parsed {
  const { elements, end: start } = readFileMeta(arr);
  const tsElement = elements['x00020010'];
  const ts =
    tsElement && tsElement.length > 0
      ? dicomParser.readFixedString(arr, tsElement.dataOffset, tsElement.length).trim()
      : '';
  if (ts === '')
    throw new ImageRejection('dicom-malformed', 'DICOM file meta information has no Transfer Syntax UID (0002,0010)');
  const full = ts === DEFLATED_LE ? inflateDataSet(arr, start, maxInflatedBytes) : arr;
  const declaredExplicit = ts !== IMPLICIT_VR_LE;
  const explicit = encodedExplicit(full, start) ?? declaredExplicit;
  const parser = ts === EXPLICIT_VR_BE ? dicomParser.bigEndianByteArrayParser : dicomParser.littleEndianByteArrayParser;
  const ds = new DataSetClass(parser, full, elements);
  ds.warnings = [];
  if (start >= full.length) throw new ImageRejection('truncated', 'DICOM file ends after its file meta information');
  const stream = new dicomParser.ByteStream(parser, full, start);
  if (explicit) dicomParser.parseDicomDataSetExplicit(ds, stream, full.length);
  else dicomParser.parseDicomDataSetImplicit(ds, stream, full.length);
  if (explicit === declaredExplicit) return { ds, warnings: [] };
  const pixelData = ds.elements['x7fe00010'];
  if (!explicit && pixelData?.hadUndefinedLength && !pixelData.encapsulatedPixelData) {
    // The implicit-VR reader does not look for fragments: read them as the explicit-VR reader would.
    dicomParser.findEndOfEncapsulatedElement(
      new dicomParser.ByteStream(parser, full, pixelData.dataOffset),
      pixelData,
      ds.warnings,
    );
  }
  return {
    ds,
    warnings: [explicit ? 'explicit-vr-under-implicit-transfer-syntax' : 'implicit-vr-under-explicit-transfer-syntax'],
  };
}

/**
 * File meta information (PS3.10 7.1): explicit VR little endian elements of group 0002 after the
 * preamble and 'DICM'. It ends at the first element of another group, whatever its tag sorts as.
 */
function readFileMeta(arr: Uint8Array): { elements: Record<string, dicomParser.Element>; end: number } {
  const elements: Record<string, dicomParser.Element> = {};
  const le = dicomParser.littleEndianByteArrayParser;
  const stream = new dicomParser.ByteStream(le, arr, 132);
  while (stream.position + 4 <= arr.length && le.readUint16(arr, stream.position) === 0x0002) {
    const el = dicomParser.readDicomElementExplicit(stream, stream.warnings);
    el.parser = le;
    elements[el.tag] = el;
  }
  if (stream.position > arr.length)
    throw new ImageRejection('truncated', 'DICOM file ends inside its file meta information');
  return { elements, end: stream.position };
}

/** Whether the element at `start` carries a VR (explicit VR); undefined when too few bytes are left to tell. */
function encodedExplicit(arr: Uint8Array, start: number): boolean | undefined {
  if (start + 6 > arr.length) return undefined;
  return VRS.has(String.fromCharCode(arr[start + 4] ?? 0, arr[start + 5] ?? 0));
}

/** The file with its deflated data set (PS3.5 A.5) inflated in place, within the inflation budget. */
function inflateDataSet(arr: Uint8Array, position: number, maxInflatedBytes: number): Uint8Array {
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(arr.subarray(position), { maxOutputLength: maxInflatedBytes });
  } catch (e) {
    const msg = describeThrown(e);
    if (/maxOutputLength|Cannot create a Buffer larger/i.test(msg)) {
      throw new ImageRejection('too-large', `deflated DICOM inflates beyond ${maxInflatedBytes} bytes`, {
        maxInflatedBytes,
      });
    }
    throw new ImageRejection(
      /unexpected end/i.test(msg) ? 'truncated' : 'dicom-malformed',
      `deflated DICOM data set could not be inflated: ${msg}`,
    );
  }
  const full = new Uint8Array(position + inflated.length);
  full.set(arr.subarray(0, position), 0);
  full.set(inflated, position);
  return full;
}

function str(ds: dicomParser.DataSet, tag: string): string | undefined {
  const v = ds.string(tag);
  return v === undefined || v === '' ? undefined : v.trim();
}

/** Records that an attribute's value could not be used as it stands (one warning per attribute). */
function malformed(warnings: string[], keyword: string): void {
  const w = `malformed-attribute-${keyword}`;
  if (!warnings.includes(w)) warnings.push(w);
}

/**
 * First value of a decimal string (DS) attribute. A value that is not a plain number is read as far
 * as it is numeric ("40abc" -> 40) or ignored, with a warning naming the attribute.
 */
function decimal(ds: dicomParser.DataSet, tag: string, keyword: string, warnings: string[]): number | undefined {
  const raw = ds.elements[tag] && ds.elements[tag].length > 0 ? ds.string(tag, 0) : undefined;
  if (raw === undefined || raw === '') return undefined;
  const exact = Number(raw);
  if (Number.isFinite(exact)) return exact;
  malformed(warnings, keyword);
  const lenient = parseFloat(raw);
  return Number.isFinite(lenient) ? lenient : undefined;
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

/** Image Pixel module attributes (PS3.3 C.7.6.3) as decoded; see readLayout for malformed values. */
interface Layout {
  rows: number;
  cols: number;
  frames: number;
  /** False when Number of Frames was unreadable and 1 is assumed. */
  framesKnown: boolean;
  spp: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  signed: boolean;
  planar: number;
  photometric: string | undefined;
}

/** Samples of frame 0 (interleaved by pixel when colour) and the shift that aligns High Bit. */
interface Frame {
  samples: ArrayLike<number>;
  shift: number;
}

/**
 * Number of Frames (IS, 0028,0008): a positive integer. "2.0" is read as 2; anything else (empty, 0,
 * not a number) as 1 frame, whose position in encapsulated data is then found without the count.
 */
function numberOfFrames(ds: dicomParser.DataSet, warnings: string[]): { frames: number; known: boolean } {
  if (!ds.elements['x00280008']) return { frames: 1, known: true };
  const raw = (ds.string('x00280008') ?? '').split('\\')[0]?.trim() ?? '';
  if (/^\+?\d+$/.test(raw) && Number(raw) >= 1) return { frames: Number(raw), known: true };
  malformed(warnings, 'NumberOfFrames');
  const n = Number(raw);
  return raw !== '' && Number.isInteger(n) && n >= 1 ? { frames: n, known: true } : { frames: 1, known: false };
}

function readLayout(ds: dicomParser.DataSet, warnings: string[]): Layout {
  const { frames, known } = numberOfFrames(ds, warnings);
  const bitsAllocated = ds.uint16('x00280100') ?? 0;
  const bitsStored = ds.uint16('x00280101') ?? bitsAllocated;
  const pixelRepresentation = ds.uint16('x00280103');
  if (pixelRepresentation !== undefined && pixelRepresentation !== 0 && pixelRepresentation !== 1)
    malformed(warnings, 'PixelRepresentation');
  let planar = ds.uint16('x00280006') ?? 0;
  if (planar !== 0 && planar !== 1) {
    malformed(warnings, 'PlanarConfiguration');
    planar = 0;
  }
  return {
    rows: ds.uint16('x00280010') ?? 0,
    cols: ds.uint16('x00280011') ?? 0,
    frames,
    framesKnown: known,
    spp: ds.uint16('x00280002') ?? 1,
    bitsAllocated,
    bitsStored,
    highBit: ds.uint16('x00280102') ?? bitsStored - 1,
    signed: pixelRepresentation === 1,
    planar,
    photometric: str(ds, 'x00280004')?.toUpperCase(),
  };
}

/**
 * Rejects layouts that cannot be decoded, in a fixed order (dimensions, pixel budget, samples, bits,
 * photometric interpretation). Bits Stored / High Bit that contradict Bits Allocated are repaired
 * (Bits Stored = Bits Allocated, High Bit = Bits Stored - 1) with a warning.
 */
function validateLayout(L: Layout, codec: Codec, maxPixels: number, warnings: string[]): void {
  const { spp, bitsAllocated } = L;
  validateDimensions(L, maxPixels);
  if (spp !== 1 && spp !== 3)
    throw new ImageRejection('unsupported-format', `DICOM Samples per Pixel ${spp} not supported`, {
      samplesPerPixel: spp,
    });
  if (![1, 8, 16, 32].includes(bitsAllocated))
    throw new ImageRejection('unsupported-format', `DICOM Bits Allocated ${bitsAllocated} not supported`, {
      bitsAllocated,
    });
  if (bitsAllocated === 1 && (spp !== 1 || codec === 'jpeg-baseline')) {
    throw new ImageRejection(
      'unsupported-format',
      `DICOM Bits Allocated 1 is not supported with ${spp} Samples per Pixel${codec === 'jpeg-baseline' ? ' or JPEG baseline' : ''}`,
      { bitsAllocated },
    );
  }
  if (L.bitsStored < 1 || L.bitsStored > bitsAllocated) {
    malformed(warnings, 'BitsStored');
    L.bitsStored = bitsAllocated;
  }
  if (L.highBit + 1 < L.bitsStored || L.highBit >= bitsAllocated) {
    malformed(warnings, 'HighBit');
    L.highBit = L.bitsStored - 1;
  }
  if (L.photometric === 'PALETTE COLOR' && spp !== 1) {
    throw new ImageRejection(
      'dicom-malformed',
      `DICOM Photometric Interpretation PALETTE COLOR with ${spp} Samples per Pixel`,
      { photometricInterpretation: L.photometric },
    );
  }
}

function validateDimensions({ rows, cols, frames }: Layout, maxPixels: number): void {
  if (rows <= 0 || cols <= 0)
    throw new ImageRejection('dicom-malformed', 'DICOM Pixel Data without valid Rows/Columns', { rows, cols });
  if (rows * cols * frames > maxPixels) {
    throw new ImageRejection(
      'too-many-pixels',
      `DICOM declares ${cols}x${rows}x${frames} frames = ${rows * cols * frames} pixels, limit ${maxPixels}`,
      { width: cols, height: rows, frames, maxPixels },
    );
  }
}

/** Non-identifying attributes for the preprocessing record. */
function describe(ds: dicomParser.DataSet, ts: string, tsInfo: { name: string } | undefined): DicomDecoded['dicom'] {
  const modality = str(ds, 'x00080060');
  const photometric = str(ds, 'x00280004')?.toUpperCase();
  const bitsStored = ds.uint16('x00280101');
  const pixelRepresentation = ds.uint16('x00280103');
  return {
    ...(modality ? { modality } : {}),
    ...(photometric ? { photometricInterpretation: photometric } : {}),
    transferSyntax: ts,
    ...(tsInfo
      ? { transferSyntaxName: tsInfo.name }
      : KNOWN_UNSUPPORTED[ts]
        ? { transferSyntaxName: KNOWN_UNSUPPORTED[ts] }
        : {}),
    ...(bitsStored !== undefined ? { bitsStored } : {}),
    ...(pixelRepresentation !== undefined ? { pixelRepresentation } : {}),
  };
}

/** The Pixel Data element (or Float / Double Float Pixel Data: bytes per value), or the rejection that says why there is none. */
function pixelDataElement(
  ds: dicomParser.DataSet,
  ts: string,
  modality: string | undefined,
): { el: dicomParser.Element; float?: 4 | 8 } {
  const pixelEl = ds.elements['x7fe00010'];
  if (!pixelEl || (pixelEl.length === 0 && !pixelEl.encapsulatedPixelData)) {
    const float = ds.elements['x7fe00008'];
    const double = ds.elements['x7fe00009'];
    if (float && float.length > 0) return { el: float, float: 4 };
    if (double && double.length > 0) return { el: double, float: 8 };
    throw new ImageRejection(
      'dicom-no-pixel-data',
      `DICOM object has no Pixel Data (7FE0,0010)${modality ? ` (modality ${modality})` : ''}`,
      { transferSyntax: ts },
    );
  }
  return { el: pixelEl };
}

export async function decodeDicom(bytes: Buffer, maxPixels: number): Promise<DicomDecoded> {
  // Inflation budget: the largest pixel data allowed (12 bytes per pixel: 3 samples x 32 bits) plus 16 MiB for the rest.
  const { ds, warnings } = parse(bytes, Math.min(2 ** 31 - 1, maxPixels * 12 + 16 * 1024 * 1024));
  const ts = str(ds, 'x00020010') ?? '';
  const tsInfo = SUPPORTED_TRANSFER_SYNTAXES[ts];
  const dicom = describe(ds, ts, tsInfo);
  const { el: pixelEl, float } = pixelDataElement(ds, ts, dicom.modality);
  if (!tsInfo) {
    const name = KNOWN_UNSUPPORTED[ts];
    throw new ImageRejection(
      'dicom-unsupported-transfer-syntax',
      `DICOM transfer syntax ${ts || '(missing)'}${name ? ` (${name})` : ''} is not supported`,
      { transferSyntax: ts },
    );
  }
  const L = readLayout(ds, warnings);
  const native = tsInfo.codec === 'native' || tsInfo.codec === 'native-be';
  if (float) {
    validateDimensions(L, maxPixels);
    if (L.frames > 1) warnings.push('multi-frame');
    const data = voiToGrey(
      ds,
      floatFrame(ds, pixelEl, L, float, native ? tsInfo.codec === 'native' : undefined),
      L,
      warnings,
    );
    return decoded(L, data, float * 8, dicom, warnings);
  }
  validateLayout(L, tsInfo.codec, maxPixels, warnings);
  if (L.frames > 1) warnings.push('multi-frame');

  const frame = native
    ? nativeFrame(ds, pixelEl, L, tsInfo.codec === 'native')
    : await encapsulatedFrameSamples(ds, pixelEl, L, ts, tsInfo);
  let data: Float32Array;
  if (L.spp === 3) {
    data = colourToGrey(frame, L, tsInfo.codec);
    warnings.push('colour-converted-to-grey');
  } else if (L.photometric === 'PALETTE COLOR') {
    data = paletteToGrey(ds, frame, L);
    warnings.push('colour-converted-to-grey');
  } else {
    data = monochromeToGrey(ds, frame, L, warnings);
  }
  return decoded(L, data, L.bitsStored, dicom, warnings);
}

function decoded(
  { rows, cols, frames, spp }: Layout,
  data: Float32Array,
  bitsPerSample: number,
  dicom: DicomDecoded['dicom'],
  warnings: string[],
): DicomDecoded {
  return {
    image: { width: cols, height: rows, data },
    source: {
      format: 'dicom',
      width: cols,
      height: rows,
      bitsPerSample,
      channels: spp,
      ...(frames > 1 ? { pages: frames } : {}),
    },
    dicom,
    warnings,
  };
}

/** Frame 0 of Float (FL) or Double Float (FD) Pixel Data, native only, as 32-bit floats. */
function floatFrame(
  ds: dicomParser.DataSet,
  el: dicomParser.Element,
  L: Layout,
  bytesPerValue: 4 | 8,
  fileLE: boolean | undefined,
): Float32Array {
  if (fileLE === undefined || L.spp !== 1)
    throw new ImageRejection(
      'unsupported-format',
      'DICOM Float/Double Float Pixel Data is supported uncompressed, one sample per pixel',
    );
  const n = L.rows * L.cols;
  const arr = ds.byteArray;
  const available = Math.min(el.length, arr.length - el.dataOffset);
  if (available < n * bytesPerValue) {
    throw new ImageRejection(
      el.dataOffset + el.length > arr.length ? 'truncated' : 'decode-failed',
      `DICOM Float Pixel Data holds ${Math.max(0, available)} bytes, expected ${n * bytesPerValue}`,
    );
  }
  const view = new DataView(arr.buffer, arr.byteOffset + el.dataOffset, n * bytesPerValue);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = bytesPerValue === 4 ? view.getFloat32(i * 4, fileLE) : view.getFloat64(i * 8, fileLE);
    out[i] = Number.isFinite(v) ? v : 0; // NaN and infinities carry no grey value
  }
  return out;
}

/** Bytes of frame 0 in native (uncompressed) Pixel Data (PS3.5 8.1.1, and C.7.6.3.1.2 for YBR_FULL_422). */
function nativeFrameBytes(L: Layout): number {
  const n = L.rows * L.cols;
  if (L.bitsAllocated === 1) return Math.ceil(n / 8);
  const bpp = L.bitsAllocated / 8;
  // YBR_FULL_422: two luminance samples per pair of pixels share one Cb and one Cr.
  if (L.spp === 3 && L.photometric === 'YBR_FULL_422') return n * 2 * bpp;
  return n * L.spp * bpp;
}

/** Frame 0 of native Pixel Data, after checking that the element holds it. */
function nativeFrame(ds: dicomParser.DataSet, pixelEl: dicomParser.Element, L: Layout, fileLE: boolean): Frame {
  if (pixelEl.encapsulatedPixelData)
    throw new ImageRejection('decode-failed', 'encapsulated Pixel Data in a native transfer syntax');
  const arr = ds.byteArray;
  const n = L.rows * L.cols;
  const frameBytes = nativeFrameBytes(L);
  const totalBytes = L.bitsAllocated === 1 ? Math.ceil((n * L.frames) / 8) : frameBytes * L.frames;
  const available = arr.length - pixelEl.dataOffset;
  if (pixelEl.dataOffset + pixelEl.length > arr.length || available < frameBytes) {
    throw new ImageRejection(
      'truncated',
      `DICOM Pixel Data holds ${Math.max(0, Math.min(available, pixelEl.length))} bytes, expected ${totalBytes}`,
      { expected: totalBytes, available: Math.max(0, available) },
    );
  }
  if (pixelEl.length < frameBytes)
    throw new ImageRejection(
      'decode-failed',
      `DICOM Pixel Data length ${pixelEl.length} is smaller than one frame (${frameBytes})`,
    );
  return samplesOfNativeFrame(
    new Uint8Array(arr.buffer, arr.byteOffset + pixelEl.dataOffset, Math.min(pixelEl.length, available)),
    L,
    fileLE,
    pixelEl.vr === 'OW',
  );
}

/**
 * Samples of a native frame starting at bytes[0], copied into an aligned typed array in host byte
 * order: 16/32-bit words swapped from big endian, 8-bit data in an OW element of a big endian file
 * swapped pairwise (as written), 1-bit frames unpacked, YBR_FULL_422 expanded to three samples.
 */
function samplesOfNativeFrame(bytes: Uint8Array, L: Layout, fileLE: boolean, ow: boolean): Frame {
  const n = L.rows * L.cols;
  if (L.bitsAllocated === 1) return { samples: unpackBits(bytes, 0, n), shift: 0 };
  const frameBytes = nativeFrameBytes(L);
  const bpp = L.bitsAllocated / 8;
  const swapPairs = bpp === 1 && !fileLE && ow;
  // An odd frame in a pairwise-swapped OW element needs its pair's other byte (the element has even length).
  const copyBytes = swapPairs ? Math.min(bytes.length, frameBytes + (frameBytes % 2)) & ~1 : frameBytes;
  const copy = Buffer.alloc(Math.max(copyBytes, frameBytes));
  Buffer.from(bytes.buffer, bytes.byteOffset, copyBytes).copy(copy);
  const hostLE = endianness() === 'LE';
  if (swapPairs) copy.subarray(0, copyBytes).swap16();
  else if (bpp > 1 && hostLE !== fileLE) {
    if (bpp === 2) copy.swap16();
    else copy.swap32();
  }
  const out =
    bpp === 1
      ? new Uint8Array(copy.buffer, copy.byteOffset, frameBytes)
      : bpp === 2
        ? new Uint16Array(copy.buffer, copy.byteOffset, frameBytes / 2)
        : new Uint32Array(copy.buffer, copy.byteOffset, frameBytes / 4);
  let samples: ArrayLike<number> = out;
  if (L.spp === 3 && L.photometric === 'YBR_FULL_422') samples = expandYbr422(out, n);
  else if (L.spp === 3 && L.planar === 1) samples = interleave(out, n);
  return { samples, shift: L.highBit + 1 - L.bitsStored };
}

/** The first n pixels of bit-packed 1-bit data (PS3.5 8.1.1: first pixel in the least significant bit). */
function unpackBits(arr: ArrayLike<number>, offset: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = ((arr[offset + (i >> 3)] ?? 0) >> (i & 7)) & 1;
  return out;
}

/**
 * YBR_FULL_422 (PS3.3 C.7.6.3.1.2) to three samples per pixel: each pair of pixels is stored as
 * Y1 Y2 Cb Cr; both pixels get the pair's Cb and Cr. Pairs run through the frame in pixel order.
 */
function expandYbr422(values: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    const pair = (i >> 1) * 4;
    out[i * 3] = values[pair + (i & 1)] ?? 0;
    out[i * 3 + 1] = values[pair + 2] ?? 0;
    out[i * 3 + 2] = values[pair + 3] ?? 0;
  }
  return out;
}

/** Frame 0 of encapsulated Pixel Data, decoded by the transfer syntax's codec. */
async function encapsulatedFrameSamples(
  ds: dicomParser.DataSet,
  pixelEl: dicomParser.Element,
  L: Layout,
  ts: string,
  tsInfo: { name: string; codec: Codec },
): Promise<Frame> {
  const { rows, cols, spp, bitsAllocated, bitsStored, signed } = L;
  const n = rows * cols;
  const frame = encapsulatedFrame(ds, pixelEl, L.frames, L.framesKnown, tsInfo.codec);
  let decoded: DecodedFrame;
  try {
    switch (tsInfo.codec) {
      case 'rle':
        // 1-bit frames are one segment of the bit-packed frame's bytes.
        if (bitsAllocated === 1)
          return { samples: unpackBits(decodeRleFrame(frame, 1, Math.ceil(n / 8), 1, 8), 0, n), shift: 0 };
        return { samples: decodeRleFrame(frame, rows, cols, spp, bitsAllocated), shift: L.highBit + 1 - bitsStored };
      case 'deflate-frame':
        return samplesOfNativeFrame(inflateFrame(frame, nativeFrameBytes(L)), L, true, false);
      case 'jpeg-baseline':
        if (bitsStored > 8)
          throw new ImageRejection(
            'dicom-unsupported-transfer-syntax',
            `DICOM transfer syntax ${ts} with ${bitsStored}-bit samples (12-bit JPEG) is not supported`,
            { transferSyntax: ts, bitsStored },
          );
        // The DICOM Photometric Interpretation, not the decoder's guess, says whether the frame is YCbCr.
        decoded = await decodeJpegBaseline(
          spp === 3 && L.photometric !== undefined
            ? jpegWithColourSpace(frame, L.photometric === 'RGB' ? 'rgb' : 'ycbcr')
            : frame,
        );
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
      default:
        throw new Error(`codec ${tsInfo.codec} has no encapsulated frames`);
    }
  } catch (e) {
    if (e instanceof ImageRejection) throw e;
    if (e instanceof CodecError || e instanceof RleError)
      throw new ImageRejection('decode-failed', `DICOM ${tsInfo.name} frame could not be decoded: ${e.message}`, {
        transferSyntax: ts,
      });
    throw e;
  }
  return { samples: decodedSamples(decoded, L, ts), shift: 0 };
}

/** A frame of Deflated Image Frame Compression (PS3.5 A.4.13): the native frame's bytes, deflated. */
function inflateFrame(frame: Uint8Array, frameBytes: number): Uint8Array {
  let raw: Buffer;
  try {
    raw = inflateRawSync(frame, { maxOutputLength: frameBytes });
  } catch (e) {
    throw new CodecError(`inflate failed: ${describeThrown(e)}`);
  }
  if (raw.length < frameBytes) throw new CodecError(`inflated frame holds ${raw.length} bytes, expected ${frameBytes}`);
  return raw;
}

/** Checks a codec's frame against the DICOM attributes and returns its samples. */
function decodedSamples(decoded: DecodedFrame, L: Layout, ts: string): ArrayLike<number> {
  const { rows, cols, spp } = L;
  const n = rows * cols;
  if (decoded.width !== cols || decoded.height !== rows) {
    throw new ImageRejection(
      'decode-failed',
      `decoded frame is ${decoded.width}x${decoded.height}, DICOM says ${cols}x${rows}`,
      { transferSyntax: ts },
    );
  }
  if (decoded.components === 3 && spp === 1) {
    // libjpeg-turbo returns 3 equal channels for grey JPEG: keep the first.
    const s = decoded.samples;
    const g = new Float64Array(n);
    for (let i = 0; i < n; i++) g[i] = s[i * 3] ?? 0;
    return g;
  }
  if (decoded.components !== spp) {
    throw new ImageRejection('decode-failed', `decoded frame has ${decoded.components} components, DICOM says ${spp}`, {
      transferSyntax: ts,
    });
  }
  return decoded.samples;
}

/** Stored value of a raw sample: bits above High Bit and below its Bits Stored masked off, sign-extended. */
function storedValueReader(L: Layout, shift: number): (raw: number) => number {
  const maxStored = 2 ** L.bitsStored;
  const signBit = 2 ** (L.bitsStored - 1);
  return (raw: number): number => {
    // Arithmetic rather than bit operations so that 32-bit words work too.
    let v = Math.floor(raw / 2 ** shift) % maxStored;
    if (v < 0) v += maxStored; // codecs return signed samples as negative numbers
    if (L.signed && v >= signBit) v -= maxStored;
    return v;
  };
}

/** Codecs whose output keeps the stored colour space (no YCbCr to RGB conversion inside). */
const RAW_COLOUR_CODECS: ReadonlySet<Codec> = new Set(['native', 'native-be', 'rle', 'jpeg-ls', 'jpeg-lossless']);

/** Colour: luminance of R,G,B (or Y of YBR_FULL / YBR_FULL_422), scaled by the sample range; no VOI. */
function colourToGrey({ samples, shift }: Frame, L: Layout, codec: Codec): Float32Array {
  const n = L.rows * L.cols;
  const storedValue = storedValueReader(L, shift);
  const ybr = (L.photometric === 'YBR_FULL' || L.photometric === 'YBR_FULL_422') && RAW_COLOUR_CODECS.has(codec);
  const scale = 1 / (2 ** L.bitsStored - 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = storedValue(samples[i * 3] ?? 0);
    out[i] = ybr
      ? r * scale
      : luminance(r, storedValue(samples[i * 3 + 1] ?? 0), storedValue(samples[i * 3 + 2] ?? 0)) * scale;
  }
  return out;
}

/** PALETTE COLOR: each stored value's palette entry, as luminance; no VOI. */
function paletteToGrey(ds: dicomParser.DataSet, { samples, shift }: Frame, L: Layout): Float32Array {
  const n = L.rows * L.cols;
  const storedValue = storedValueReader(L, shift);
  const entry = paletteLuminance(ds, L.signed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = entry(storedValue(samples[i] ?? 0));
  return out;
}

/** Grey: Modality LUT (rescale), then voiToGrey (1-bit data: its full range unless windowed). */
function monochromeToGrey(
  ds: dicomParser.DataSet,
  { samples, shift }: Frame,
  L: Layout,
  warnings: string[],
): Float32Array {
  const n = L.rows * L.cols;
  const out = new Float32Array(n);
  const slope = decimal(ds, 'x00281053', 'RescaleSlope', warnings) ?? 1;
  const intercept = decimal(ds, 'x00281052', 'RescaleIntercept', warnings) ?? 0;
  if (L.bitsStored < 32) {
    // Integer fast path: >>> also maps codecs' negative (signed) samples to their bit patterns.
    const maxStored = 2 ** L.bitsStored;
    const mask = maxStored - 1;
    const signBit = 2 ** (L.bitsStored - 1);
    for (let i = 0; i < n; i++) {
      let v = ((samples[i] ?? 0) >>> shift) & mask;
      if (L.signed && v >= signBit) v -= maxStored;
      out[i] = v * slope + intercept;
    }
  } else {
    const storedValue = storedValueReader(L, shift);
    for (let i = 0; i < n; i++) out[i] = storedValue(samples[i] ?? 0) * slope + intercept;
  }

  // A bit mask's two values are black and white, however few pixels are set.
  return voiToGrey(
    ds,
    out,
    L,
    warnings,
    L.bitsStored === 1 ? [Math.min(intercept, slope + intercept), Math.max(intercept, slope + intercept)] : undefined,
  );
}

/** VOI LUT (window; else `fullRange` if given, else robust percentiles), then MONOCHROME1 inversion, in place. */
function voiToGrey(
  ds: dicomParser.DataSet,
  out: Float32Array,
  L: Layout,
  warnings: string[],
  fullRange?: readonly [number, number],
): Float32Array {
  const n = out.length;
  const wc = decimal(ds, 'x00281050', 'WindowCenter', warnings);
  const ww = decimal(ds, 'x00281051', 'WindowWidth', warnings);
  const voiFunction = str(ds, 'x00281056')?.toUpperCase() ?? 'LINEAR';
  if (wc !== undefined && ww !== undefined && ww > 0) {
    applyWindow(out, wc, ww, voiFunction);
  } else if (fullRange) {
    rescaleTo01(out, fullRange[0], fullRange[1]);
  } else {
    const [lo = 0, hi = 0] = sampledQuantiles(out, [0.005, 0.995]);
    rescaleTo01(out, lo, hi);
    warnings.push('auto-window');
  }
  if (L.photometric === 'MONOCHROME1') for (let i = 0; i < n; i++) out[i] = 1 - (out[i] ?? 0);
  return out;
}

/** Maps [lo, hi] linearly to [0, 1], clamped; all 0 when the range is empty. */
function rescaleTo01(values: Float32Array, lo: number, hi: number): void {
  if (!(hi > lo)) {
    values.fill(0);
    return;
  }
  const inv = 1 / (hi - lo);
  for (let i = 0; i < values.length; i++) values[i] = Math.min(1, Math.max(0, ((values[i] ?? 0) - lo) * inv));
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

/**
 * Bytes of frame 0 of encapsulated Pixel Data, with truncation checks on every fragment. Without a
 * Basic Offset Table, one frame owns all fragments, n frames in n fragments own one each, and JPEG
 * frames are found by their markers (also when Number of Frames was unreadable).
 */
function encapsulatedFrame(
  ds: dicomParser.DataSet,
  el: dicomParser.Element,
  frames: number,
  framesKnown: boolean,
  codec: Codec,
): Uint8Array {
  if (!el.encapsulatedPixelData)
    throw new ImageRejection('decode-failed', 'compressed transfer syntax but Pixel Data is not encapsulated');
  const frags = el.fragments ?? [];
  const len = ds.byteArray.length;
  if (frags.length === 0) throw new ImageRejection('truncated', 'encapsulated Pixel Data has no fragments');
  for (const f of frags) {
    if (f.position + f.length > len)
      throw new ImageRejection(
        'truncated',
        `encapsulated Pixel Data fragment runs past the end of the file (${f.position + f.length} > ${len})`,
      );
  }
  const jpeg = codec === 'jpeg-baseline' || codec === 'jpeg-lossless';
  try {
    let frame: Uint8Array;
    if (el.basicOffsetTable && el.basicOffsetTable.length > 0)
      frame = dicomParser.readEncapsulatedImageFrame(ds, el, 0);
    else if (frames === 1 && (framesKnown || !jpeg || frags.length === 1))
      frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, frags.length);
    else if (frags.length === frames) frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, 1);
    else if (jpeg) {
      frame = dicomParser.readEncapsulatedImageFrame(ds, el, 0, dicomParser.createJPEGBasicOffsetTable(ds, el));
    } else throw new Error('cannot locate frame 0: no Basic Offset Table and fragments do not map to frames');
    return frame;
  } catch (e) {
    throw new ImageRejection('decode-failed', `encapsulated Pixel Data could not be read: ${thrownText(e)}`);
  }
}
