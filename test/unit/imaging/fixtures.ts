/**
 * Test fixtures generated in code: a drawn digit, raster encodings through sharp, and a small
 * DICOM Part 10 writer (with RLE, JPEG lossless, JPEG-LS and JPEG 2000 encoders) so every
 * transfer syntax is exercised without files or network.
 */
import sharp from 'sharp';
import { deflateRawSync } from 'node:zlib';

/** Options used by most tests. */
export const OPTS = {
  profile: 'mnist' as const,
  xraySize: 224,
  maxInputBytes: 64 * 1024 * 1024,
  maxPixels: 50_000_000,
};
export const XRAY = { ...OPTS, profile: 'xray' as const };

function distToSegment(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/**
 * A "7" drawn with thick antialiased strokes, dark ink (0) on white (255), in a size x size image.
 * The digit occupies the rectangle [x0, x1] x [y0, y1] given in fractions of the size (default
 * off-centre, to check that centring works).
 */
export function drawSeven(size: number, box = { x0: 0.15, y0: 0.2, x1: 0.55, y1: 0.8 }, thickness = 0.06): Uint8Array {
  const out = new Uint8Array(size * size);
  const s = size;
  const segs: [number, number, number, number][] = [
    [box.x0 * s, box.y0 * s, box.x1 * s, box.y0 * s],
    [box.x1 * s, box.y0 * s, (box.x0 + (box.x1 - box.x0) * 0.35) * s, box.y1 * s],
  ];
  const r = (thickness * s) / 2;
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      let d = Infinity;
      for (const [ax, ay, bx, by] of segs) d = Math.min(d, distToSegment(x + 0.5, y + 0.5, ax, ay, bx, by));
      const ink = Math.max(0, Math.min(1, r + 0.5 - d));
      out[y * s + x] = Math.round(255 * (1 - ink));
    }
  }
  return out;
}

export function grayPng(px: Uint8Array, w: number, h: number): Promise<Buffer> {
  return sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 1 } })
    .png()
    .toBuffer();
}

/** Centre of mass with pixel (i, j) covering [i, i+1) x [j, j+1). */
export function centreOfMass(pixels: Float32Array, w: number, h: number): { x: number; y: number; mass: number } {
  let s = 0;
  let sx = 0;
  let sy = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = pixels[y * w + x] ?? 0;
      s += v;
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
    }
  }
  return { x: sx / s, y: sy / s, mass: s };
}

/** Bounding box of pixels above `t`. */
export function bbox(
  pixels: Float32Array,
  w: number,
  h: number,
  t = 0.1,
): { x0: number; y0: number; x1: number; y1: number } {
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if ((pixels[y * w + x] ?? 0) > t) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  return { x0, y0, x1, y1 };
}

// ---------------------------------------------------------------------------------------------
// DICOM writer

export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
  rle: '1.2.840.10008.1.2.5',
  deflatedFrames: '1.2.840.10008.1.2.8.1',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
  jpegLossless: '1.2.840.10008.1.2.4.57',
  jpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  jpegLs: '1.2.840.10008.1.2.4.80',
  jpegLsNear: '1.2.840.10008.1.2.4.81',
  j2kLossless: '1.2.840.10008.1.2.4.90',
  j2k: '1.2.840.10008.1.2.4.91',
  htj2k: '1.2.840.10008.1.2.4.201',
  mpeg4: '1.2.840.10008.1.2.4.102',
} as const;

type Value = string | number | number[] | Buffer;
/** [group, element, VR, value] */
export type DicomElement = [number, number, string, Value];

const LONG_VRS = new Set(['OB', 'OW', 'OF', 'OD', 'OL', 'SQ', 'UT', 'UN', 'UC', 'UR']);

function encodeValue(vr: string, v: Value, le: boolean): Buffer {
  if (Buffer.isBuffer(v)) {
    const even = v.length % 2 ? Buffer.concat([v, Buffer.from([0])]) : Buffer.from(v);
    // OW values are given little endian, like native pixel data.
    return !le && vr === 'OW' ? even.swap16() : even;
  }
  if (vr === 'US' || vr === 'SS' || vr === 'UL' || vr === 'SL' || vr === 'FL' || vr === 'FD') {
    const vals = Array.isArray(v) ? v : [Number(v)];
    const size = vr === 'US' || vr === 'SS' ? 2 : vr === 'FD' ? 8 : 4;
    const b = Buffer.alloc(vals.length * size);
    vals.forEach((x, i) => {
      const o = i * size;
      if (vr === 'US') void (le ? b.writeUInt16LE(x, o) : b.writeUInt16BE(x, o));
      else if (vr === 'SS') void (le ? b.writeInt16LE(x, o) : b.writeInt16BE(x, o));
      else if (vr === 'UL') void (le ? b.writeUInt32LE(x, o) : b.writeUInt32BE(x, o));
      else if (vr === 'SL') void (le ? b.writeInt32LE(x, o) : b.writeInt32BE(x, o));
      else if (vr === 'FL') void (le ? b.writeFloatLE(x, o) : b.writeFloatBE(x, o));
      else void (le ? b.writeDoubleLE(x, o) : b.writeDoubleBE(x, o));
    });
    return b;
  }
  let s = Array.isArray(v) ? v.join('\\') : String(v);
  if (s.length % 2) s += vr === 'UI' ? '\0' : ' ';
  return Buffer.from(s, 'latin1');
}

function encodeElement(
  group: number,
  elem: number,
  vr: string,
  value: Buffer,
  explicit: boolean,
  le: boolean,
  undefinedLength = false,
): Buffer {
  const len = undefinedLength ? 0xffffffff : value.length;
  const head: number[] = [];
  const u16 = (x: number): void => void (le ? head.push(x & 0xff, x >> 8) : head.push(x >> 8, x & 0xff));
  const u32 = (x: number): void => {
    const b = Buffer.alloc(4);
    void (le ? b.writeUInt32LE(x >>> 0) : b.writeUInt32BE(x >>> 0));
    head.push(...b);
  };
  u16(group);
  u16(elem);
  if (!explicit) u32(len);
  else if (LONG_VRS.has(vr)) {
    head.push(vr.charCodeAt(0), vr.charCodeAt(1), 0, 0);
    u32(len);
  } else {
    head.push(vr.charCodeAt(0), vr.charCodeAt(1));
    u16(len);
  }
  return Buffer.concat([Buffer.from(head), value]);
}

export type PixelPayload = { native: Buffer; vr?: 'OB' | 'OW' } | { fragments: Buffer[]; offsets?: number[] };

/** Encapsulated Pixel Data (always little endian): BOT item, one item per fragment, delimiter. */
function encapsulate(fragments: Buffer[], offsets: number[] = []): Buffer {
  const item = (b: Buffer): Buffer => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(0xfffe, 0);
    h.writeUInt16LE(0xe000, 2);
    const body = b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
    h.writeUInt32LE(body.length, 4);
    return Buffer.concat([h, body]);
  };
  const bot = Buffer.alloc(offsets.length * 4);
  offsets.forEach((o, i) => bot.writeUInt32LE(o, i * 4));
  const delim = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  return Buffer.concat([item(bot), ...fragments.map(item), delim]);
}

export interface WriteOptions {
  /** The 128-byte preamble (default zeros); shorter is zero-padded. */
  preamble?: Buffer;
  /** Encode the data set with this VR encoding whatever the transfer syntax says (a known writer defect). */
  vr?: 'explicit' | 'implicit';
}

/**
 * Writes a DICOM Part 10 file: 128-byte preamble, 'DICM', the file meta group (explicit VR LE), then
 * `elements` and the pixel data in the given transfer syntax. 16-bit native pixel data is given
 * little endian and swapped for big endian.
 */
export function writeDicom(
  ts: string,
  elements: DicomElement[],
  pixels?: PixelPayload,
  options: WriteOptions = {},
): Buffer {
  const meta = [
    encodeElement(0x0002, 0x0001, 'OB', Buffer.from([0, 1]), true, true),
    encodeElement(0x0002, 0x0002, 'UI', encodeValue('UI', '1.2.840.10008.5.1.4.1.1.7', true), true, true),
    encodeElement(0x0002, 0x0003, 'UI', encodeValue('UI', '1.2.3.4.5.6.7.8.9', true), true, true),
    encodeElement(0x0002, 0x0010, 'UI', encodeValue('UI', ts, true), true, true),
    encodeElement(0x0002, 0x0012, 'UI', encodeValue('UI', '1.2.3.4.99', true), true, true),
  ];
  const metaBody = Buffer.concat(meta);
  const groupLen = encodeElement(0x0002, 0x0000, 'UL', encodeValue('UL', metaBody.length, true), true, true);
  const explicit = options.vr === undefined ? ts !== TS.implicitLE : options.vr === 'explicit';
  const le = ts !== TS.explicitBE;
  const sorted = [...elements].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const body: Buffer[] = sorted.map(([g, e, vr, v]) => encodeElement(g, e, vr, encodeValue(vr, v, le), explicit, le));
  if (pixels) {
    if ('native' in pixels) {
      const vr = pixels.vr ?? 'OW';
      let data = pixels.native;
      if (!le && vr === 'OW') {
        data = Buffer.from(data);
        data.swap16();
      }
      body.push(encodeElement(0x7fe0, 0x0010, vr, data, explicit, le));
    } else {
      body.push(
        encodeElement(0x7fe0, 0x0010, 'OB', Buffer.alloc(0), explicit, le, true),
        encapsulate(pixels.fragments, pixels.offsets),
      );
    }
  }
  let dataset = Buffer.concat(body);
  if (ts === TS.deflatedLE) dataset = deflateRawSync(dataset);
  const preamble = Buffer.alloc(128);
  options.preamble?.copy(preamble, 0, 0, 128);
  return Buffer.concat([preamble, Buffer.from('DICM', 'latin1'), groupLen, metaBody, dataset]);
}

export interface ImageAttrs {
  rows: number;
  cols: number;
  bitsAllocated: number;
  bitsStored?: number;
  highBit?: number;
  pixelRepresentation?: 0 | 1;
  photometric?: string;
  samplesPerPixel?: number;
  planar?: number;
  frames?: number;
  extra?: DicomElement[];
}

/** Patient identity placed in every fixture, to prove it never leaks into metadata. */
export const PATIENT = { name: 'Doe^Jane^Secret', id: 'PID-7734-XYZ', birth: '19700101', accession: 'ACC998877' };

export function imageElements(a: ImageAttrs): DicomElement[] {
  const bs = a.bitsStored ?? a.bitsAllocated;
  const els: DicomElement[] = [
    [0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7'],
    [0x0008, 0x0018, 'UI', '1.2.3.4.5.6.7.8.9'],
    [0x0008, 0x0050, 'SH', PATIENT.accession],
    [0x0008, 0x0060, 'CS', 'CT'],
    [0x0010, 0x0010, 'PN', PATIENT.name],
    [0x0010, 0x0020, 'LO', PATIENT.id],
    [0x0010, 0x0030, 'DA', PATIENT.birth],
    [0x0028, 0x0002, 'US', a.samplesPerPixel ?? 1],
    [0x0028, 0x0004, 'CS', a.photometric ?? 'MONOCHROME2'],
    [0x0028, 0x0010, 'US', a.rows],
    [0x0028, 0x0011, 'US', a.cols],
    [0x0028, 0x0100, 'US', a.bitsAllocated],
    [0x0028, 0x0101, 'US', bs],
    [0x0028, 0x0102, 'US', a.highBit ?? bs - 1],
    [0x0028, 0x0103, 'US', a.pixelRepresentation ?? 0],
  ];
  if ((a.samplesPerPixel ?? 1) > 1) els.push([0x0028, 0x0006, 'US', a.planar ?? 0]);
  if (a.frames !== undefined) els.push([0x0028, 0x0008, 'IS', String(a.frames)]);
  return [...els, ...(a.extra ?? [])];
}

/** Little-endian bytes of 16-bit samples. */
export function le16(values: ArrayLike<number>): Buffer {
  const b = Buffer.alloc(values.length * 2);
  for (let i = 0; i < values.length; i++) b.writeUInt16LE((values[i] ?? 0) & 0xffff, i * 2);
  return b;
}

// ---- RLE (PS3.5 Annex G) encoder

function packBits(src: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < src.length) {
    let run = 1;
    while (i + run < src.length && run < 128 && src[i + run] === src[i]) run++;
    if (run >= 2) {
      out.push(257 - run, src[i] ?? 0);
      i += run;
      continue;
    }
    const start = i;
    let lit = 0;
    while (i < src.length && lit < 128 && !(i + 1 < src.length && src[i + 1] === src[i])) {
      i++;
      lit++;
    }
    if (lit === 0) {
      i++;
      lit = 1;
    }
    out.push(lit - 1, ...src.subarray(start, start + lit));
  }
  if (out.length % 2) out.push(0x80); // -128: no-op padding to even length
  return Buffer.from(out);
}

/** RLE frame of samples (interleaved by pixel) with bytesPerSample bytes each. */
export function rleEncode(samples: ArrayLike<number>, pixels: number, spp: number, bytesPerSample: number): Buffer {
  const segments: Buffer[] = [];
  for (let s = 0; s < spp; s++) {
    for (let b = 0; b < bytesPerSample; b++) {
      const shift = 8 * (bytesPerSample - 1 - b);
      const plane = new Uint8Array(pixels);
      for (let i = 0; i < pixels; i++) plane[i] = ((samples[i * spp + s] ?? 0) >>> shift) & 0xff;
      segments.push(packBits(plane));
    }
  }
  const header = Buffer.alloc(64);
  header.writeUInt32LE(segments.length, 0);
  let off = 64;
  segments.forEach((seg, k) => {
    header.writeUInt32LE(off, 4 + 4 * k);
    off += seg.length;
  });
  return Buffer.concat([header, ...segments]);
}

// ---- JPEG lossless (process 14, selection value 1, one component) encoder

export function jpegLosslessEncode(samples: ArrayLike<number>, w: number, h: number, precision: number): Buffer {
  const bytes: number[] = [0xff, 0xd8];
  const seg = (marker: number, payload: number[]): void => {
    const len = payload.length + 2;
    bytes.push(0xff, marker, len >> 8, len & 0xff, ...payload);
  };
  seg(0xc3, [precision, h >> 8, h & 0xff, w >> 8, w & 0xff, 1, 1, 0x11, 0]);
  // Huffman table: the 17 difference categories 0..16, all 5-bit codes (canonical: code = category).
  const counts = new Array<number>(16).fill(0);
  counts[4] = 17;
  seg(0xc4, [0x00, ...counts, ...Array.from({ length: 17 }, (_, i) => i)]);
  seg(0xda, [1, 1, 0x00, 1, 0, 0]);
  let acc = 0;
  let nbits = 0;
  const put = (value: number, n: number): void => {
    for (let i = n - 1; i >= 0; i--) {
      acc = (acc << 1) | ((value >>> i) & 1);
      nbits++;
      if (nbits === 8) {
        bytes.push(acc);
        if (acc === 0xff) bytes.push(0);
        acc = 0;
        nbits = 0;
      }
    }
  };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = samples[y * w + x] ?? 0;
      const pred =
        y === 0 && x === 0
          ? 1 << (precision - 1)
          : x === 0
            ? (samples[(y - 1) * w] ?? 0)
            : (samples[y * w + x - 1] ?? 0);
      let d = (v - pred) % 65536;
      if (d > 32768) d -= 65536;
      if (d < -32767) d += 65536;
      const ssss = d === 0 ? 0 : d === 32768 ? 16 : 32 - Math.clz32(Math.abs(d));
      put(ssss, 5);
      if (ssss > 0 && ssss < 16) put(d > 0 ? d : d + (1 << ssss) - 1, ssss);
    }
  }
  if (nbits > 0) put(0x7f, 8 - nbits);
  bytes.push(0xff, 0xd9);
  return Buffer.from(bytes);
}

// ---- JPEG-LS and JPEG 2000 through the codecs' own encoders

interface WasmEncoder {
  getDecodedBuffer(info: {
    width: number;
    height: number;
    bitsPerSample: number;
    componentCount: number;
    isSigned: boolean;
  }): Uint8Array;
  getEncodedBuffer(): Uint8Array;
  encode(): void;
  setNearLossless?(n: number): void;
  setDecompositions?(n: number): void;
  setQuality?(lossless: boolean, ratio: number): void;
  delete(): void;
}

async function wasmEncode(
  spec: string,
  ctor: string,
  raw: Uint8Array,
  info: { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned: boolean },
  tweak?: (e: WasmEncoder) => void,
): Promise<Buffer> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const factory = require(spec) as (arg?: object) => Promise<Record<string, new () => WasmEncoder>>;
  const mod = await factory({ print: () => undefined, printErr: () => undefined });
  const Enc = mod[ctor];
  if (!Enc) throw new Error(`${spec} has no ${ctor}`);
  const enc = new Enc();
  try {
    enc.getDecodedBuffer(info).set(raw);
    tweak?.(enc);
    enc.encode();
    return Buffer.from(enc.getEncodedBuffer());
  } finally {
    enc.delete();
  }
}

export function jpegLsEncode(raw16: Buffer, w: number, h: number, bits: number, near = 0): Promise<Buffer> {
  return wasmEncode(
    '@cornerstonejs/codec-charls/wasmjs',
    'JpegLSEncoder',
    raw16,
    { width: w, height: h, bitsPerSample: bits, componentCount: 1, isSigned: false },
    (e) => e.setNearLossless?.(near),
  );
}

export function j2kEncode(raw16: Buffer, w: number, h: number, bits: number, signed: boolean): Promise<Buffer> {
  return wasmEncode(
    '@cornerstonejs/codec-openjpeg/wasmjs',
    'J2KEncoder',
    raw16,
    { width: w, height: h, bitsPerSample: bits, componentCount: 1, isSigned: signed },
    (e) => e.setDecompositions?.(2),
  );
}

/** A small ramp test pattern: value(x, y) = (x * 7 + y * 13) mod range. */
export function ramp(w: number, h: number, range: number, offset = 0): number[] {
  const out: number[] = [];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.push(((x * 7 + y * 13) % range) + offset);
  return out;
}

/**
 * A baseline JPEG with its frame's three component ids set to `ids` (in the frame header and the
 * scan headers) and its JFIF marker removed: how some writers store RGB (ids 0,1,2, no marker).
 */
export function withComponentIds(jpeg: Buffer, ids: readonly [number, number, number]): Buffer {
  const parts: Buffer[] = [jpeg.subarray(0, 2)];
  const renamed = new Map<number, number>();
  let p = 2;
  for (;;) {
    const marker = jpeg[p + 1] ?? 0;
    const end = p + 2 + jpeg.readUInt16BE(p + 2);
    const seg = Buffer.from(jpeg.subarray(p, end));
    if (marker === 0xc0 || marker === 0xc2) {
      for (let i = 0; i < 3; i++) {
        renamed.set(seg[10 + 3 * i] ?? 0, ids[i] ?? 0);
        seg[10 + 3 * i] = ids[i] ?? 0;
      }
    }
    if (marker === 0xda) for (let j = 0; j < (seg[4] ?? 0); j++) seg[5 + 2 * j] = renamed.get(seg[5 + 2 * j] ?? 0) ?? 0;
    if (marker !== 0xe0) parts.push(seg);
    p = end;
    if (marker === 0xda) break; // one scan (baseline): the entropy-coded data and EOI follow
  }
  return Buffer.concat([...parts, jpeg.subarray(p)]);
}
