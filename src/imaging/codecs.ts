/**
 * Compressed DICOM frame decoders. The Emscripten modules are instantiated lazily, once per process
 * (first use), and each decoder instance is deleted right after use so the WASM heap is released.
 */
import { describeThrown } from './errors';

export interface DecodedFrame {
  width: number;
  height: number;
  bitsPerSample: number;
  components: number;
  /** Samples, interleaved by pixel when components > 1 (colour-by-pixel). */
  samples: Uint8Array | Uint16Array | Int16Array;
}

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  getInterleaveMode?(): number;
  delete(): void;
}

interface WasmModule {
  JPEGDecoder?: new () => WasmDecoder;
  JpegLSDecoder?: new () => WasmDecoder;
  J2KDecoder?: new () => WasmDecoder;
}

type Factory = (moduleArg?: Record<string, unknown>) => Promise<WasmModule>;

/** Raised when a codec fails on the data (not when the module fails to load). */
export class CodecError extends Error {}

const modules = new Map<string, Promise<WasmModule>>();

function loadModule(specifier: string): Promise<WasmModule> {
  let m = modules.get(specifier);
  if (!m) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const factory = require(specifier) as Factory;
    // Silence the codecs' own console chatter ([INFO]/[ERROR] lines from OpenJPEG).
    m = factory({ print: () => undefined, printErr: () => undefined });
    m.catch(() => modules.delete(specifier));
    modules.set(specifier, m);
  }
  return m;
}

async function runWasmDecoder(
  specifier: string,
  ctor: keyof WasmModule,
  data: Uint8Array,
  bits: number,
  signed: boolean,
): Promise<DecodedFrame> {
  const mod = await loadModule(specifier);
  const Ctor = mod[ctor];
  if (!Ctor) throw new Error(`${specifier} has no ${ctor}`);
  const dec = new Ctor();
  try {
    dec.getEncodedBuffer(data.length).set(data);
    try {
      dec.decode();
    } catch (e) {
      throw new CodecError(`${ctor} failed: ${describeThrown(e)}`);
    }
    const info = dec.getFrameInfo();
    const decoded = dec.getDecodedBuffer();
    const { width, height, componentCount } = info;
    const bitsPerSample = info.bitsPerSample || bits;
    if (!(width > 0 && height > 0 && componentCount > 0)) throw new CodecError(`${ctor} failed: no image decoded`);
    const bytesPerSample = bitsPerSample > 8 ? 2 : 1;
    const expected = width * height * componentCount * bytesPerSample;
    if (decoded.length < expected)
      throw new CodecError(`${ctor} failed: decoded ${decoded.length} bytes, expected ${expected}`);
    // Copy out of the WASM heap before the instance is deleted.
    const copy = new Uint8Array(expected);
    copy.set(decoded.subarray(0, expected));
    let samples: DecodedFrame['samples'];
    if (bytesPerSample === 1) samples = copy;
    else samples = (info.isSigned ?? signed) ? new Int16Array(copy.buffer) : new Uint16Array(copy.buffer);
    return { width, height, bitsPerSample, components: componentCount, samples };
  } finally {
    dec.delete();
  }
}

/** JPEG baseline/extended 8-bit (1.2.840.10008.1.2.4.50/.51) via libjpeg-turbo. */
export function decodeJpegBaseline(data: Uint8Array): Promise<DecodedFrame> {
  return runWasmDecoder('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', data, 8, false);
}

/** JPEG-LS lossless / near-lossless (1.2.840.10008.1.2.4.80/.81) via CharLS. */
export function decodeJpegLs(data: Uint8Array, bits: number, signed: boolean): Promise<DecodedFrame> {
  return runWasmDecoder('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', data, bits, signed);
}

/** JPEG 2000 (1.2.840.10008.1.2.4.90/.91) via OpenJPEG. */
export function decodeJpeg2000(data: Uint8Array, bits: number, signed: boolean): Promise<DecodedFrame> {
  return runWasmDecoder('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', data, bits, signed);
}

interface LosslessDecoderCtor {
  new (): {
    decode(
      buffer: ArrayBuffer,
      offset: number,
      length: number,
      numBytes?: number,
    ): Uint8Array | Uint16Array | Int16Array;
    xDim?: number;
    yDim?: number;
    numComp?: number;
    precision?: number;
  };
}

/** JPEG lossless, process 14 (1.2.840.10008.1.2.4.57/.70) via jpeg-lossless-decoder-js (pure JS). */
export function decodeJpegLossless(data: Uint8Array, bitsAllocated: number, expectedPixels: number): DecodedFrame {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Decoder } = require('jpeg-lossless-decoder-js') as { Decoder: LosslessDecoderCtor };
  const dec = new Decoder();
  const copy = new Uint8Array(data); // own ArrayBuffer
  let out: Uint8Array | Uint16Array | Int16Array;
  try {
    out = dec.decode(copy.buffer, 0, copy.length, bitsAllocated > 8 ? 2 : 1);
  } catch (e) {
    throw new CodecError(`JPEG lossless decode failed: ${describeThrown(e)}`);
  }
  const width = dec.xDim ?? 0;
  const height = dec.yDim ?? 0;
  const components = dec.numComp || 1;
  const n = width * height * components;
  if (!(width > 0 && height > 0) || width * height !== expectedPixels || out.length < n)
    throw new CodecError('JPEG lossless decode failed: frame size does not match Rows x Columns');
  // The decoder sizes 16-bit output by bytes, not samples: keep exactly one sample per pixel component.
  return { width, height, bitsPerSample: dec.precision ?? bitsAllocated, components, samples: out.subarray(0, n) };
}

/** SOFn markers (start of frame), except DHT (C4), JPG (C8) and DAC (CC) in that range. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function hasText(b: Uint8Array, at: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * A copy of a 3-component JPEG code stream whose colour space libjpeg will read as `space`: DICOM's
 * Photometric Interpretation says whether a frame is RGB or YCbCr, while libjpeg guesses from a JFIF
 * marker (always YCbCr) or the component ids (1,2,3 YCbCr; 'R','G','B' RGB; anything else YCbCr).
 * The ids are rewritten in the frame header and in every scan header, and for RGB the JFIF marker's
 * identifier is defaced. An Adobe APP14 marker states the transform itself: such a stream, and any
 * that is not a 3-component JPEG, is returned unchanged.
 */
export function jpegWithColourSpace(src: Uint8Array, space: 'rgb' | 'ycbcr'): Uint8Array {
  if (src[0] !== 0xff || src[1] !== 0xd8) return src;
  const ids = space === 'rgb' ? [0x52, 0x47, 0x42] : [1, 2, 3];
  const b = new Uint8Array(src);
  const newId = new Map<number, number>();
  let p = 2;
  while (p + 4 <= b.length) {
    const marker = b[p + 1] ?? 0;
    // Outside marker segments: entropy-coded bytes, stuffed 0xFF00, fill bytes, RSTn.
    if (b[p] !== 0xff || marker === 0x00 || marker === 0xff || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      p++;
      continue;
    }
    if (marker === 0xd9) break;
    const seg = p + 4;
    const len = ((b[p + 2] ?? 0) << 8) | (b[p + 3] ?? 0);
    // libjpeg reads an APP14 as Adobe's only with its 12 bytes (identifier, version, flags, transform).
    if (marker === 0xee && len >= 14 && hasText(b, seg, 'Adobe')) return src;
    if (marker === 0xe0 && space === 'rgb' && hasText(b, seg, 'JFIF\0')) b[seg + 3] = 0x58; // 'JFIX': not a JFIF marker any more
    if (isStartOfFrame(marker)) {
      if (b[seg + 5] !== 3) return src;
      for (let i = 0; i < 3; i++) {
        newId.set(b[seg + 6 + 3 * i] ?? 0, ids[i] ?? 0);
        b[seg + 6 + 3 * i] = ids[i] ?? 0;
      }
    }
    if (marker === 0xda) {
      const ns = b[seg] ?? 0;
      for (let j = 0; j < ns; j++) {
        const at = seg + 1 + 2 * j;
        b[at] = newId.get(b[at] ?? 0) ?? b[at] ?? 0;
      }
    }
    p = seg + len - 2;
  }
  return b;
}
