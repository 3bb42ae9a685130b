/**
 * Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
 * a big-endian header `0x00 0x00 TYPE NDIMS`, NDIMS big-endian uint32 sizes, then the values
 * in row-major order. Files may be gzipped (detected by the gzip magic bytes, not the name).
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';

export type IdxTypedArray = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  /** Sizes of every dimension, e.g. [60000, 28, 28] for an image file or [60000] for labels. */
  shape: number[];
  /** IDX type code: 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, 0x0d float, 0x0e double. */
  type: number;
  /** The values, in row-major order (a Uint8Array for the usual ubyte files). */
  data: IdxTypedArray;
}

export class IdxFormatError extends Error {
  constructor(source: string, reason: string) {
    super(`${source} is not a valid IDX file: ${reason}`);
    this.name = 'IdxFormatError';
  }
}

const TYPES: Record<number, { bytes: number; name: string }> = {
  0x08: { bytes: 1, name: 'ubyte' },
  0x09: { bytes: 1, name: 'byte' },
  0x0b: { bytes: 2, name: 'short' },
  0x0c: { bytes: 4, name: 'int' },
  0x0d: { bytes: 4, name: 'float' },
  0x0e: { bytes: 8, name: 'double' },
};

function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Parses an IDX file already in memory (gzipped or plain). `source` names it in errors. */
export function parseIdx(input: Uint8Array, source = 'buffer'): IdxArray {
  const buf = Buffer.from(isGzip(input) ? gunzipSync(input) : input);
  if (buf.length < 4) throw new IdxFormatError(source, `only ${buf.length} bytes`);
  if (buf[0] !== 0 || buf[1] !== 0)
    throw new IdxFormatError(source, 'the magic number does not start with two zero bytes');
  const type = buf[2] as number;
  const ndims = buf[3] as number;
  const t = TYPES[type];
  if (t === undefined) throw new IdxFormatError(source, `unknown type code 0x${type.toString(16)}`);
  if (ndims === 0) throw new IdxFormatError(source, 'zero dimensions');
  const headerBytes = 4 + 4 * ndims;
  if (buf.length < headerBytes) throw new IdxFormatError(source, 'the header is truncated');
  const shape: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const n = buf.readUInt32BE(4 + 4 * i);
    shape.push(n);
    count *= n;
  }
  const expected = headerBytes + count * t.bytes;
  if (buf.length !== expected) {
    throw new IdxFormatError(
      source,
      `the header declares ${shape.join('x')} ${t.name} values (${expected} bytes) but the file has ${buf.length} bytes`,
    );
  }
  return { shape, type, data: decodeValues(buf, headerBytes, count, type) };
}

function decodeValues(buf: Buffer, offset: number, count: number, type: number): IdxTypedArray {
  switch (type) {
    case 0x08:
      return new Uint8Array(buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + offset + count));
    case 0x09:
      return new Int8Array(buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + offset + count));
    case 0x0b: {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = buf.readInt16BE(offset + 2 * i);
      return out;
    }
    case 0x0c: {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = buf.readInt32BE(offset + 4 * i);
      return out;
    }
    case 0x0d: {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = buf.readFloatBE(offset + 4 * i);
      return out;
    }
    default: {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = buf.readDoubleBE(offset + 8 * i);
      return out;
    }
  }
}

/** Reads an IDX file (gzipped or plain) from disk. */
export async function readIdx(path: string): Promise<IdxArray> {
  return parseIdx(await readFile(path), path);
}

/** Synchronous variant of readIdx. */
export function readIdxSync(path: string): IdxArray {
  return parseIdx(readFileSync(path), path);
}

/** Encodes values as an IDX file (plain; gzip the result yourself if wanted). Used by tests and fixtures. */
export function encodeIdx(shape: readonly number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((n, i) => header.writeUInt32BE(n, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}
