/** Test images made on the fly: digit-like strokes as PNG, and the broken inputs of every kind. */
import sharp from 'sharp';

/** A black-on-white (or inverted) blob of ink: a thick ring with a tail, like a "9", at (cx, cy). */
export function digitPixels(size: number, opts: { cx?: number; cy?: number; scale?: number; inkOnWhite?: boolean; seed?: number } = {}): Buffer {
  const { cx = size / 2, cy = size / 2, scale = size / 3, inkOnWhite = true, seed = 0 } = opts;
  const px = Buffer.alloc(size * size);
  const r = scale * (0.45 + 0.05 * (seed % 3));
  const w = Math.max(1.5, scale * 0.14);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x - cx;
      const dy = y - (cy - scale * 0.35);
      const ring = Math.abs(Math.hypot(dx, dy) - r) < w;
      const tail = Math.abs(x - (cx + r)) < w && y > cy - scale * 0.35 && y < cy + scale * (0.9 + 0.05 * (seed % 2));
      const ink = ring || tail;
      px[y * size + x] = ink === inkOnWhite ? 0 : 255;
    }
  }
  return px;
}

export async function digitPng(size = 28, opts: Parameters<typeof digitPixels>[1] = {}): Promise<Buffer> {
  return sharp(digitPixels(size, opts), { raw: { width: size, height: size, channels: 1 } }).png().toBuffer();
}

/** One of every kind of bad input, with the rejection code it must get. */
export async function badInputs(): Promise<{ name: string; data: Buffer; code: string }[]> {
  const png = await digitPng(64);
  const bmpHeader = Buffer.alloc(70);
  bmpHeader.write('BM', 0, 'ascii');
  bmpHeader.writeUInt32LE(70, 2);
  bmpHeader.writeUInt32LE(54, 10);
  bmpHeader.writeUInt32LE(40, 14);
  bmpHeader.writeInt32LE(2, 18);
  bmpHeader.writeInt32LE(2, 22);
  bmpHeader.writeUInt16LE(1, 26);
  bmpHeader.writeUInt16LE(24, 28);
  return [
    { name: 'bad/empty.png', data: Buffer.alloc(0), code: 'empty' },
    { name: 'bad/text.png', data: Buffer.from('this is not an image at all, just some words\n'.repeat(10)), code: 'not-an-image' },
    { name: 'bad/truncated.png', data: png.subarray(0, Math.floor(png.length / 2)), code: 'truncated' },
    { name: 'bad/picture.bmp', data: bmpHeader, code: 'unsupported-format' },
    { name: 'bad/drawing.svg', data: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'), code: 'unsupported-format' },
  ];
}
