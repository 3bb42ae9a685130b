/**
 * Content sniffing from magic bytes. Only formats in the allow-list below ever reach a decoder;
 * everything else is rejected here, so e.g. SVG is never rendered whatever its file name says.
 */

/** Raster formats decoded by sharp, and DICOM Part 10 decoded by our own DICOM path. */
export type DecodableFormat = 'png' | 'jpeg' | 'webp' | 'tiff' | 'gif' | 'dicom';

export type Sniffed =
  { kind: 'decodable'; format: DecodableFormat } | { kind: 'unsupported'; format: string } | { kind: 'unknown' };

function startsWith(b: Buffer, bytes: readonly number[], at = 0): boolean {
  if (b.length < at + bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (b[at + i] !== bytes[i]) return false;
  return true;
}

function ascii(b: Buffer, at: number, text: string): boolean {
  return b.length >= at + text.length && b.toString('latin1', at, at + text.length) === text;
}

/** True when the bytes look like XML/SVG text (BOM, whitespace, comments, doctype or an <svg element). */
function looksLikeSvg(b: Buffer): boolean {
  let head = b.subarray(0, 4096).toString('utf8');
  if (head.charCodeAt(0) === 0xfeff) head = head.slice(1);
  const t = head.trimStart().toLowerCase();
  if (t.startsWith('<svg') || t.startsWith('<!doctype svg')) return true;
  if (t.startsWith('<?xml') || t.startsWith('<!--') || t.startsWith('<!doctype')) return t.includes('<svg');
  // UTF-16 encoded XML
  if (startsWith(b, [0xff, 0xfe, 0x3c, 0x00]) || startsWith(b, [0xfe, 0xff, 0x00, 0x3c])) return true;
  return false;
}

export function sniff(b: Buffer): Sniffed {
  // DICOM first: PS3.10 lets the 128-byte preamble hold another format's header (TIFF, for dual-format
  // files), so 'DICM' at offset 128 wins over any magic number at offset 0.
  if (ascii(b, 128, 'DICM')) return { kind: 'decodable', format: 'dicom' };
  if (startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { kind: 'decodable', format: 'png' };
  if (startsWith(b, [0xff, 0xd8, 0xff])) return { kind: 'decodable', format: 'jpeg' };
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return { kind: 'decodable', format: 'webp' };
  if (startsWith(b, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2a]))
    return { kind: 'decodable', format: 'tiff' };
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return { kind: 'decodable', format: 'gif' };

  // Recognised, deliberately not decoded.
  if (ascii(b, 0, 'BM') && b.length >= 14) return { kind: 'unsupported', format: 'bmp' };
  if (startsWith(b, [0x49, 0x49, 0x2b, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2b]))
    return { kind: 'unsupported', format: 'bigtiff' };
  if (ascii(b, 4, 'ftyp')) {
    const brand = b.toString('latin1', 8, 12);
    return { kind: 'unsupported', format: /avi[fs]/.test(brand) ? 'avif' : 'heif' };
  }
  if (startsWith(b, [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20]) || startsWith(b, [0xff, 0x4f, 0xff, 0x51]))
    return { kind: 'unsupported', format: 'jpeg2000' };
  if (startsWith(b, [0xff, 0x0a]) || startsWith(b, [0x00, 0x00, 0x00, 0x0c, 0x4a, 0x58, 0x4c, 0x20]))
    return { kind: 'unsupported', format: 'jpegxl' };
  if (ascii(b, 0, '%PDF')) return { kind: 'unsupported', format: 'pdf' };
  if (ascii(b, 0, '8BPS')) return { kind: 'unsupported', format: 'psd' };
  if (startsWith(b, [0x00, 0x00, 0x01, 0x00]) && b.length >= 6) return { kind: 'unsupported', format: 'ico' };
  if (ascii(b, 0, 'qoif')) return { kind: 'unsupported', format: 'qoi' };
  if (/^P[1-7]\s/.test(b.toString('latin1', 0, 3))) return { kind: 'unsupported', format: 'pnm' };
  if (looksLikeSvg(b)) return { kind: 'unsupported', format: 'svg' };
  return { kind: 'unknown' };
}

/**
 * Structural truncation check that needs no decoding: true when the container is cut short.
 * PNG: a chunk runs past the end or IEND is missing. GIF: no trailer. JPEG: no EOI marker at the end
 * (trailing zero padding tolerated). Other formats: false (left to the decoder).
 */
export function looksTruncated(b: Buffer, format: DecodableFormat): boolean {
  if (format === 'png') {
    let p = 8;
    while (p + 8 <= b.length) {
      const len = b.readUInt32BE(p);
      const type = b.toString('latin1', p + 4, p + 8);
      const end = p + 12 + len;
      if (end > b.length) return true;
      if (type === 'IEND') return false;
      p = end;
    }
    return true;
  }
  if (format === 'jpeg') {
    let end = b.length;
    while (end > 2 && b[end - 1] === 0x00) end--;
    return !(b[end - 2] === 0xff && b[end - 1] === 0xd9);
  }
  if (format === 'gif') {
    let end = b.length;
    while (end > 1 && b[end - 1] === 0x00) end--;
    return b[end - 1] !== 0x3b;
  }
  return false;
}
