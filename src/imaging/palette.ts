/**
 * PALETTE COLOR (PS3.3 C.7.6.3.1.5): stored values index red, green and blue lookup tables, given
 * whole (C.7.6.3.1.6) or as segments (C.7.9.2: discrete, linear and indirect segments). The
 * pipeline works in grey, so each entry is reduced to its luminance in [0, 1].
 */
import type * as dicomParser from 'dicom-parser';
import { ImageRejection } from './errors';

const CHANNELS = [
  { descriptor: 'x00281101', data: 'x00281201', segmented: 'x00281221' },
  { descriptor: 'x00281102', data: 'x00281202', segmented: 'x00281222' },
  { descriptor: 'x00281103', data: 'x00281203', segmented: 'x00281223' },
] as const;

/** Words (or bytes, for 8-bit tables in OB) of a lookup-table element, in the data set's byte order. */
function tableWords(ds: dicomParser.DataSet, tag: string, bytesPerWord: 1 | 2): number[] {
  const el = ds.elements[tag];
  if (!el) return [];
  const count = Math.floor(el.length / bytesPerWord);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++)
    out[i] = bytesPerWord === 1 ? (ds.byteArray[el.dataOffset + i] ?? 0) : (ds.uint16(tag, i) ?? 0);
  return out;
}

/**
 * Expands segmented LUT data (PS3.3 C.7.9.2). An indirect segment copies `limit` segments from
 * elsewhere (`previous`: the entry before them); it may not point at another indirect segment.
 */
function expandSegments(
  data: readonly number[],
  start: number,
  limit: number,
  previous: number | undefined,
  depth: number,
): number[] {
  const lut: number[] = [];
  const nested = limit !== Infinity;
  let p = start;
  for (let segments = 0; segments < limit && p + 1 < data.length; segments++) {
    if (lut.length > 65536) throw new Error('expands to more than 65536 entries');
    const opcode = data[p] ?? 0;
    const length = data[p + 1] ?? 0;
    p += 2;
    if (opcode === 0) {
      lut.push(...data.slice(p, p + length));
      p += length;
    } else if (opcode === 1) {
      const y0 = lut.length > 0 ? (lut[lut.length - 1] ?? 0) : previous;
      if (y0 === undefined) throw new Error('a linear segment cannot come first');
      const y1 = data[p++] ?? 0;
      for (let k = 1; k <= length; k++) lut.push(Math.round(y0 + ((y1 - y0) * k) / length));
    } else if (opcode === 2) {
      if (lut.length === 0 && previous === undefined) throw new Error('an indirect segment cannot come first');
      if (nested) throw new Error('an indirect segment points at another indirect segment');
      // Where the segments to repeat start: a 32-bit value, low half first. The standard calls it a byte
      // offset; reference readers (and the writers they were tested with) index table words with it.
      const offset =
        depth === 8
          ? ((data[p + 3] ?? 0) << 24) + ((data[p + 2] ?? 0) << 16) + ((data[p + 1] ?? 0) << 8) + (data[p] ?? 0)
          : ((data[p + 1] ?? 0) << 16) + (data[p] ?? 0);
      p += depth === 8 ? 4 : 2;
      lut.push(...expandSegments(data, offset, length, lut[lut.length - 1] ?? previous, depth));
    } else {
      throw new Error(`unknown segment type ${opcode}`);
    }
  }
  return lut;
}

/**
 * Luminance in [0, 1] of every palette entry, and the mapping of a stored value to its entry
 * (values below the first mapped value take entry 0, values past the table its last entry).
 */
export function paletteLuminance(ds: dicomParser.DataSet, signed: boolean): (stored: number) => number {
  const [red] = CHANNELS;
  const entries = ds.uint16(red.descriptor, 0);
  if (entries === undefined)
    throw new ImageRejection(
      'dicom-malformed',
      'DICOM PALETTE COLOR without a Red Palette Color Lookup Table Descriptor (0028,1101)',
    );
  const count = entries === 0 ? 65536 : entries;
  const firstMapped = (signed ? ds.int16(red.descriptor, 1) : ds.uint16(red.descriptor, 1)) ?? 0;
  const nominalDepth = ds.uint16(red.descriptor, 2) ?? 16;
  const tables = CHANNELS.map((c) => {
    const whole = ds.elements[c.data];
    if (whole) return tableWords(ds, c.data, whole.length >= count * 2 ? 2 : 1);
    if (!ds.elements[c.segmented])
      throw new ImageRejection('dicom-malformed', 'DICOM PALETTE COLOR without Palette Color Lookup Table Data');
    try {
      return expandSegments(
        tableWords(ds, c.segmented, nominalDepth === 8 ? 1 : 2),
        0,
        Infinity,
        undefined,
        nominalDepth,
      );
    } catch (e) {
      throw new ImageRejection(
        'dicom-malformed',
        `DICOM segmented Palette Color Lookup Table Data could not be expanded: ${(e as Error).message}`,
      );
    }
  });
  const scale = 1 / (2 ** (nominalDepth === 8 ? 8 : 16) - 1);
  const n = Math.min(count, ...tables.map((t) => t.length));
  if (n === 0) throw new ImageRejection('dicom-malformed', 'DICOM Palette Color Lookup Table Data is empty');
  const [r = [], g = [], b = []] = tables;
  const grey = new Float32Array(n);
  for (let i = 0; i < n; i++)
    grey[i] = Math.min(1, (0.299 * (r[i] ?? 0) + 0.587 * (g[i] ?? 0) + 0.114 * (b[i] ?? 0)) * scale);
  return (stored: number): number => grey[Math.min(n - 1, Math.max(0, stored - firstMapped))] ?? 0;
}
