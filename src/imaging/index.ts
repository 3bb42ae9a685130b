/**
 * Image preprocessing for the triage pipeline: bytes of an upload in, a normalised float tensor
 * (values in [0, 1], row-major H x W, shape [H, W, 1]) and non-identifying metadata out.
 *
 * Pipeline
 *  1. Limits before parsing: 0 bytes -> `empty`; more than `maxInputBytes` -> `too-large`.
 *  2. Content sniffing from magic bytes (never the file name). Only PNG, JPEG, WebP, TIFF, GIF and
 *     DICOM Part 10 ('DICM' at offset 128, which wins over any magic number in the preamble) go on; BMP, SVG (detected as text, never rendered), AVIF/
 *     HEIF, PDF, ... are `unsupported-format`; anything else `not-an-image`.
 *  3. Header-only dimension check (sharp metadata(), DICOM Rows x Columns x Number of Frames)
 *     against `maxPixels` before any pixel buffer is allocated; sharp also gets `limitInputPixels`.
 *  4. Decode to grey in [0, 1]:
 *     - raster (sharp): first page/frame only, EXIF orientation applied, colour (RGB, CMYK) to
 *       luminance, 16-bit kept at 16-bit precision (/65535). Large images are reduced by libvips
 *       while decoding (linear kernel, antialiased): to 384 px on the long side for mnist, to the
 *       letterbox size for xray. Alpha is flattened onto white (dark ink
 *       on transparency, the usual case) unless the opaque pixels are mostly light, then onto black,
 *       so the ink stays visible either way. Plain PNGs that need no reduction (8/16-bit grey,
 *       grey + alpha, RGBA, neutral RGB; no interlace, palette, transparency chunk, colour profile
 *       or EXIF) skip sharp: png.ts decodes them to the same samples (tested bit-identical), for
 *       ~1/30 of the CPU time on a 28x28 digit.
 *     - DICOM (dicom-parser + decoders, first frame only): Bits Stored / High Bit / Pixel
 *       Representation honoured (masking, sign extension), Modality LUT (Rescale Slope/Intercept),
 *       VOI LUT (Window Center/Width with LINEAR, LINEAR_EXACT or SIGMOID; without a window the
 *       0.5/99.5 percentiles; 1-bit data its full range), MONOCHROME1 inverted after windowing;
 *       colour (RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR) to luminance; Bits Allocated 1 to 32 and
 *       Float/Double Float Pixel Data. Transfer syntaxes: implicit/explicit VR little endian,
 *       explicit VR big endian, deflated explicit VR LE, RLE Lossless (own decoder), JPEG
 *       baseline/extended 8-bit (libjpeg-turbo WASM, colour space from the Photometric
 *       Interpretation), JPEG lossless 4.57/4.70 (jpeg-lossless-decoder-js), JPEG-LS 4.80/4.81
 *       (CharLS WASM), JPEG 2000 4.90/4.91 (OpenJPEG WASM), Deflated Image Frame Compression.
 *       Others -> `dicom-unsupported-transfer-syntax`. A data set encoded with the other VR than
 *       its transfer syntax says is read as encoded; malformed attribute values are read where
 *       safe, each with a warning `malformed-attribute-<Keyword>`.
 *  5. Profile:
 *     - `mnist` (28x28): images over 384 px are first area-averaged to 384 on the long side; polarity from the border median vs the image tails (light background is
 *       inverted, so the digit is white on black); background subtracted; ink threshold
 *       max(4 sigma_noise, 25% of the ink peak); specks (components < 2% of the largest) dropped; crop
 *       to the ink's bounding box; fit into 20x20 keeping aspect (antialiased area resampling); placed
 *       in 28x28 with the centre of mass at (14, 14), pixel (i, j) covering [i, i+1) x [j, j+1)
 *       (index coordinates 13.5, 13.5), as the original MNIST procedure did.
 *     - `xray` (xraySize x xraySize): letterboxed (aspect kept, antialiased, centred, padded with 0).
 *  6. Quality: `blank` (no signal), `nearConstant` (std < 0.02), `inkFraction` (mnist: digit pixels;
 *     xray: pixels differing from the border by > 0.1), `contrast` (mnist: ink peak over background;
 *     xray: p99 - p1), `warnings` (blank, near-constant, low-contrast, tiny-ink, large-ink, inverted,
 *     off-centre, upscaled, multi-page, multi-frame, auto-window, alpha-flattened-on-white|black,
 *     colour-converted-to-grey, implicit-vr-under-explicit-transfer-syntax and the reverse,
 *     malformed-attribute-<Keyword>).
 *
 * Rejection codes (ImageRejection.code; every permanent bad-input case; any other error is a bug or
 * transient and may be retried):
 *
 * | code                              | when                                                                     |
 * |-----------------------------------|--------------------------------------------------------------------------|
 * | empty                             | 0 bytes                                                                  |
 * | too-large                         | more than maxInputBytes (checked first), or a deflated DICOM inflating past the pixel budget |
 * | not-an-image                      | no known image signature (text, random bytes, non-Part-10 DICOM)         |
 * | unsupported-format                | recognised but not accepted: BMP, SVG, AVIF/HEIF, JPEG 2000/XL files, PDF, ICO, PSD, PNM, QOI, BigTIFF; DICOM compressed float pixel data, odd Bits Allocated/Samples per Pixel |
 * | truncated                         | PNG/JPEG/GIF container cut short; DICOM meta information, element, fragment or first frame runs past the end |
 * | too-many-pixels                   | header declares more than maxPixels (DICOM: Rows x Columns x frames)     |
 * | dicom-no-pixel-data               | DICOM object without Pixel Data (7FE0,0010), e.g. a structured report    |
 * | dicom-unsupported-transfer-syntax | DICOM transfer syntax not decoded here (UID named in the message), or 12-bit JPEG |
 * | dicom-malformed                   | DICOM data set the parser cannot read (its message included), or missing Transfer Syntax UID, Rows/Columns, palette tables |
 * | decode-failed                     | decoder error on data that passed the checks above                       |
 */
import { ImageRejection } from './errors';
import { decodeDicom } from './dicom';
import { MNIST_WORKING_SIDE, PROFILE_VERSIONS, fitInside, mnistProfile, xrayProfile } from './profiles';
import { decodeRaster } from './raster';
import { sniff } from './sniff';
import type { Gray } from './gray';

export { ImageRejection } from './errors';
export type { RejectionCode } from './errors';
export { encodeNpy, decodeNpy } from './npy';
export { SUPPORTED_TRANSFER_SYNTAXES } from './dicom';

export interface PreprocessOptions {
  profile: 'mnist' | 'xray';
  /** Side of the square xray output (config default 128). */
  xraySize: number;
  /** Uploads larger than this are rejected (`too-large`) before any parsing. */
  maxInputBytes: number;
  /** Images whose header declares more pixels are rejected (`too-many-pixels`) before decoding. */
  maxPixels: number;
}

export interface ImageMetadata {
  profile: { name: 'mnist' | 'xray'; version: string };
  source: { format: string; width: number; height: number; bitsPerSample?: number; channels?: number; pages?: number };
  /** Only non-identifying attributes; never patient data. */
  dicom?: {
    modality?: string;
    photometricInterpretation?: string;
    transferSyntax: string;
    transferSyntaxName?: string;
    bitsStored?: number;
    pixelRepresentation?: number;
  };
  quality: { blank: boolean; nearConstant: boolean; inkFraction: number; contrast: number; warnings: string[] };
  shape: [number, number, 1];
}

export interface PreprocessResult {
  /** Values in [0, 1], row-major H x W. */
  pixels: Float32Array;
  metadata: ImageMetadata;
}

function checkOptions(opts: PreprocessOptions): void {
  if (opts.profile !== 'mnist' && opts.profile !== 'xray')
    throw new TypeError(`preprocessImage: unknown profile ${String(opts.profile)}`);
  if (!Number.isInteger(opts.xraySize) || opts.xraySize < 1 || opts.xraySize > 8192)
    throw new TypeError(`preprocessImage: xraySize must be an integer in 1..8192, got ${opts.xraySize}`);
  if (!(opts.maxInputBytes > 0))
    throw new TypeError(`preprocessImage: maxInputBytes must be positive, got ${opts.maxInputBytes}`);
  if (!(opts.maxPixels > 0)) throw new TypeError(`preprocessImage: maxPixels must be positive, got ${opts.maxPixels}`);
}

/**
 * The `too-large` rejection of an upload of `bytes` bytes, or undefined within the limit. Also
 * for a size known before the bytes are read (a blob's properties).
 */
export function sizeRejection(bytes: number, maxInputBytes: number): ImageRejection | undefined {
  return bytes > maxInputBytes
    ? new ImageRejection('too-large', `upload is ${bytes} bytes, limit ${maxInputBytes}`, { bytes, maxInputBytes })
    : undefined;
}

/**
 * Decodes and normalises one upload. Throws ImageRejection for every permanent bad-input case;
 * anything else thrown is a bug or a transient failure. Invalid options throw TypeError.
 */
export async function preprocessImage(bytes: Buffer, opts: PreprocessOptions): Promise<PreprocessResult> {
  checkOptions(opts);
  if (bytes.length === 0) throw new ImageRejection('empty', 'upload is empty (0 bytes)');
  const tooLarge = sizeRejection(bytes.length, opts.maxInputBytes);
  if (tooLarge !== undefined) throw tooLarge;
  const sniffed = sniff(bytes);
  if (sniffed.kind === 'unknown')
    throw new ImageRejection('not-an-image', 'content does not start with any known image signature');
  if (sniffed.kind === 'unsupported')
    throw new ImageRejection('unsupported-format', `${sniffed.format} files are not accepted`, {
      format: sniffed.format,
    });

  let image: Gray;
  let source: ImageMetadata['source'];
  let dicom: ImageMetadata['dicom'];
  let decodeWarnings: string[];
  if (sniffed.format === 'dicom') {
    const d = await decodeDicom(bytes, opts.maxPixels);
    ({ image, source, dicom, warnings: decodeWarnings } = d);
  } else {
    // Let libvips do the large reduction while decoding: to the working size (mnist) or the letterbox (xray).
    const reduceTo =
      opts.profile === 'mnist'
        ? (w: number, h: number) => fitInside(w, h, MNIST_WORKING_SIDE)
        : (w: number, h: number) => fitInside(w, h, opts.xraySize);
    const r = await decodeRaster(bytes, sniffed.format, opts.maxPixels, reduceTo);
    ({ image, source, warnings: decodeWarnings } = r);
  }

  const out = opts.profile === 'mnist' ? mnistProfile(image) : xrayProfile(image, opts.xraySize);
  const metadata: ImageMetadata = {
    profile: { name: opts.profile, version: PROFILE_VERSIONS[opts.profile] },
    source,
    ...(dicom ? { dicom } : {}),
    quality: { ...out.quality, warnings: [...decodeWarnings, ...out.quality.warnings] },
    shape: out.shape,
  };
  return { pixels: out.pixels, metadata };
}
