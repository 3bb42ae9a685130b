/** Test images made on the fly: digit-like strokes as PNG, and the broken inputs of every kind. */
import sharp from 'sharp';

/** A black-on-white (or inverted) blob of ink: a thick ring with a tail, like a "9", at (cx, cy). */
export function digitPixels(
  size: number,
  opts: { cx?: number; cy?: number; scale?: number; inkOnWhite?: boolean; seed?: number } = {},
): Buffer {
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
  return sharp(digitPixels(size, opts), { raw: { width: size, height: size, channels: 1 } })
    .png()
    .toBuffer();
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
    {
      name: 'bad/text.png',
      data: Buffer.from('this is not an image at all, just some words\n'.repeat(10)),
      code: 'not-an-image',
    },
    { name: 'bad/truncated.png', data: png.subarray(0, Math.floor(png.length / 2)), code: 'truncated' },
    { name: 'bad/picture.bmp', data: bmpHeader, code: 'unsupported-format' },
    {
      name: 'bad/drawing.svg',
      data: Buffer.from(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
      ),
      code: 'unsupported-format',
    },
  ];
}

/**
 * A synthetic chest-radiograph-like image (8-bit grey, `size` square): a body, two darker lung
 * fields and a bright mediastinum, with seeded noise; `opacity` adds a bright patch in one lung
 * (what the screening tests call PNEUMONIA).
 */
export function radiographPixels(size: number, opts: { opacity: boolean; seed: number }): Buffer {
  let s = opts.seed * 2654435761 + 1;
  const rnd = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const px = Buffer.alloc(size * size);
  const side = rnd() < 0.5 ? 0.3 : 0.7;
  const patch = {
    x: size * (side + (rnd() - 0.5) * 0.1),
    y: size * (0.45 + rnd() * 0.2),
    r: size * (0.1 + rnd() * 0.05),
  };
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x / size;
      const v = y / size;
      let g = Math.abs(u - 0.5) < 0.42 && v > 0.08 ? 0.55 : 0.08;
      const lung = (cx: number) => ((u - cx) / 0.16) ** 2 + ((v - 0.5) / 0.3) ** 2 < 1;
      if (lung(0.3) || lung(0.7)) g = 0.25;
      if (Math.abs(u - 0.5) < 0.06 && v > 0.15) g = 0.8;
      if (opts.opacity && Math.hypot(x - patch.x, y - patch.y) < patch.r) g = 0.85;
      px[y * size + x] = Math.max(0, Math.min(255, Math.round((g + (rnd() - 0.5) * 0.08) * 255)));
    }
  }
  return px;
}

export async function radiographPng(size: number, opts: { opacity: boolean; seed: number }): Promise<Buffer> {
  return sharp(radiographPixels(size, opts), { raw: { width: size, height: size, channels: 1 } })
    .png()
    .toBuffer();
}
