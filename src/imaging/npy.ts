/**
 * NumPy .npy (format version 1.0, also reads 2.0/3.0 headers) for little-endian float32 arrays in C order.
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { endianness } from 'node:os';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

function checkShape(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(`npy: invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** Serialises `data` as a .npy v1.0 file with dtype '<f4', C order, the given shape. */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer {
  const n = checkShape(shape);
  if (n !== data.length)
    throw new RangeError(`npy: shape [${shape.join(', ')}] holds ${n} values, data has ${data.length}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // magic(6) + version(2) + header length(2) + header, padded with spaces and ending in '\n', a multiple of 64.
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (header.length > 0xffff) throw new RangeError('npy: header too long for format 1.0');
  const out = Buffer.alloc(10 + header.length + data.length * 4);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  const body = out.subarray(10 + header.length);
  if (endianness() === 'LE') {
    body.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } else {
    for (let i = 0; i < data.length; i++) body.writeFloatLE(data[i] ?? 0, i * 4);
  }
  return out;
}

/** Parses a .npy file holding '<f4' data in C order. Throws an Error naming the problem when malformed. */
export function decodeNpy(buf: Buffer): { data: Float32Array; shape: number[] } {
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw new Error('npy: missing \\x93NUMPY magic');
  const major = buf[6];
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new Error('npy: truncated header');
    headerLen = buf.readUInt32LE(8);
    start = 12;
  } else {
    throw new Error(`npy: unsupported format version ${major}`);
  }
  if (start + headerLen > buf.length) throw new Error('npy: truncated header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    throw new Error(`npy: malformed header ${JSON.stringify(header)}`);
  if (descr !== '<f4') throw new Error(`npy: dtype ${descr} not supported (only '<f4')`);
  if (fortran !== 'False') throw new Error('npy: Fortran order not supported');
  const parts = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const shape = parts.map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`npy: malformed shape (${shapeText})`);
    return Number(s);
  });
  const n = checkShape(shape);
  const offset = start + headerLen;
  if (buf.length - offset !== n * 4)
    throw new Error(`npy: expected ${n * 4} data bytes for shape (${shape.join(', ')}), found ${buf.length - offset}`);
  const data = new Float32Array(n);
  if (endianness() === 'LE') {
    new Uint8Array(data.buffer).set(buf.subarray(offset, offset + n * 4));
  } else {
    for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(offset + i * 4);
  }
  return { data, shape };
}
