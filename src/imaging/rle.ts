/**
 * DICOM RLE Lossless decoder (PS3.5 Annex G). A frame is a 64-byte header (segment count, then 15
 * little-endian uint32 segment offsets) followed by PackBits-coded segments; segment k holds byte
 * plane (k mod bytesPerSample) of sample (k div bytesPerSample), most significant byte first.
 * Output: samples interleaved by pixel (colour-by-pixel), native values.
 */
export class RleError extends Error {}

export function decodeRleFrame(
  frame: Uint8Array,
  rows: number,
  cols: number,
  samplesPerPixel: number,
  bitsAllocated: number,
): Uint8Array | Uint16Array | Uint32Array {
  if (frame.length < 64) throw new RleError('RLE frame shorter than its 64-byte header');
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const nSeg = dv.getUint32(0, true);
  const bytesPerSample = bitsAllocated / 8;
  if (!Number.isInteger(bytesPerSample) || bytesPerSample < 1 || bytesPerSample > 4)
    throw new RleError(`RLE with BitsAllocated ${bitsAllocated} not supported`);
  const expectedSeg = samplesPerPixel * bytesPerSample;
  if (nSeg !== expectedSeg || nSeg > 15) throw new RleError(`RLE frame has ${nSeg} segments, expected ${expectedSeg}`);
  const n = rows * cols;
  const offsets: number[] = [];
  for (let k = 0; k < nSeg; k++) offsets.push(dv.getUint32(4 + 4 * k, true));
  const plane = new Uint8Array(n);
  const out =
    bytesPerSample === 1
      ? new Uint8Array(n * samplesPerPixel)
      : bytesPerSample === 2
        ? new Uint16Array(n * samplesPerPixel)
        : new Uint32Array(n * samplesPerPixel);
  for (let k = 0; k < nSeg; k++) {
    const start = offsets[k] ?? 0;
    const end = k + 1 < nSeg ? (offsets[k + 1] ?? frame.length) : frame.length;
    if (start < 64 || start > frame.length || end < start)
      throw new RleError(`RLE segment ${k} offset ${start} out of range`);
    const got = unpackBits(frame, start, Math.min(end, frame.length), plane);
    if (got < n) throw new RleError(`RLE segment ${k} decoded ${got} of ${n} bytes (truncated?)`);
    const sample = Math.floor(k / bytesPerSample);
    const shift = 8 * (bytesPerSample - 1 - (k % bytesPerSample));
    for (let i = 0; i < n; i++) {
      const idx = i * samplesPerPixel + sample;
      out[idx] = ((out[idx] ?? 0) | ((plane[i] ?? 0) << shift)) >>> 0;
    }
  }
  return out;
}

/** PackBits decode of src[start, end) into dst; returns the number of bytes written (stops when dst is full). */
function unpackBits(src: Uint8Array, start: number, end: number, dst: Uint8Array): number {
  let p = start;
  let o = 0;
  const cap = dst.length;
  while (p < end && o < cap) {
    const h = src[p++] ?? 0;
    const n = h > 127 ? h - 256 : h;
    if (n >= 0) {
      const len = Math.min(n + 1, cap - o, end - p);
      dst.set(src.subarray(p, p + len), o);
      o += len;
      p += n + 1;
    } else if (n !== -128) {
      if (p >= end) break;
      const v = src[p++] ?? 0;
      const len = Math.min(1 - n, cap - o);
      dst.fill(v, o, o + len);
      o += len;
    }
  }
  return o;
}
