import sharp from 'sharp';
import { preprocessImage, PreprocessResult } from '../../../src/imaging';
import { OPTS, XRAY, bbox, centreOfMass, drawSeven, grayPng } from './fixtures';

const N = 200;
const seven = drawSeven(N);

/** The digit on page/frame 1, a white page/frame 2 (so using the wrong page would come out blank). */
function twoPages(): Buffer {
  const stacked = Buffer.alloc(N * N * 2, 255);
  stacked.set(seven, 0);
  return stacked;
}

/** Every mnist output of the drawn 7 must look like an MNIST digit. */
function expectMnistDigit(r: PreprocessResult): void {
  const { pixels, metadata } = r;
  expect(metadata.shape).toEqual([28, 28, 1]);
  expect(pixels).toHaveLength(28 * 28);
  expect(metadata.profile).toEqual({ name: 'mnist', version: expect.any(String) });
  let min = Infinity;
  let max = -Infinity;
  for (const v of pixels) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  expect(min).toBe(0);
  expect(max).toBeGreaterThan(0.9);
  expect(max).toBeLessThanOrEqual(1);
  // White on black: the frame around the 20x20 box is background.
  for (let i = 0; i < 28; i++) {
    for (const [x, y] of [
      [i, 0],
      [i, 27],
      [0, i],
      [27, i],
    ] as const)
      expect(pixels[y * 28 + x]).toBe(0);
  }
  // Centre of mass at (14, 14) within 1 px, pixel (i, j) covering [i, i+1) x [j, j+1).
  const com = centreOfMass(pixels, 28, 28);
  expect(Math.abs(com.x - 14)).toBeLessThanOrEqual(1);
  expect(Math.abs(com.y - 14)).toBeLessThanOrEqual(1);
  // Fitted into 20x20: the digit is taller than wide, so its height fills ~20 px.
  const b = bbox(pixels, 28, 28, 0.05);
  expect(b.y1 - b.y0 + 1).toBeGreaterThanOrEqual(18);
  expect(b.y1 - b.y0 + 1).toBeLessThanOrEqual(21);
  expect(b.x1 - b.x0 + 1).toBeLessThan(b.y1 - b.y0 + 1);
  expect(metadata.quality.blank).toBe(false);
  expect(metadata.quality.inkFraction).toBeGreaterThan(0.01);
  expect(metadata.quality.inkFraction).toBeLessThan(0.3);
}

/** xray output of the drawn 7 (square source): 224x224, dark ink on light, values in [0, 1]. */
function expectXray(r: PreprocessResult, size = 224): void {
  expect(r.metadata.shape).toEqual([size, size, 1]);
  expect(r.pixels).toHaveLength(size * size);
  expect(Math.min(...r.pixels)).toBeGreaterThanOrEqual(0);
  expect(Math.max(...r.pixels)).toBeLessThanOrEqual(1);
  // Square input fills the frame: the corner is the (white) background, the stroke is dark.
  const at = (fx: number, fy: number): number => r.pixels[Math.floor(fy * size) * size + Math.floor(fx * size)] ?? NaN;
  expect(at(0.02, 0.02)).toBeGreaterThan(0.9);
  expect(at(0.35, 0.2)).toBeLessThan(0.2); // on the top bar of the 7
  expect(r.metadata.quality.blank).toBe(false);
}

describe('raster formats', () => {
  const cases: [string, () => Promise<Buffer>, Record<string, unknown>][] = [
    ['PNG 8-bit grey', () => grayPng(seven, N, N), { format: 'png', bitsPerSample: 8 }],
    [
      'PNG 16-bit',
      () =>
        sharp(
          Uint16Array.from(seven, (v) => v * 257),
          { raw: { width: N, height: N, channels: 1 } },
        )
          .toColourspace('grey16')
          .png()
          .toBuffer(),
      { format: 'png', bitsPerSample: 16 },
    ],
    [
      'PNG RGBA (dark ink on transparent)',
      () => {
        const rgba = Buffer.alloc(N * N * 4);
        for (let i = 0; i < N * N; i++) rgba[i * 4 + 3] = 255 - (seven[i] ?? 0);
        return sharp(rgba, { raw: { width: N, height: N, channels: 4 } })
          .png()
          .toBuffer();
      },
      { format: 'png' },
    ],
    [
      'JPEG RGB',
      () =>
        sharp(Buffer.from(seven), { raw: { width: N, height: N, channels: 1 } })
          .toColourspace('srgb')
          .jpeg({ quality: 90 })
          .toBuffer(),
      { format: 'jpeg' },
    ],
    [
      'JPEG CMYK',
      () =>
        sharp(Buffer.from(seven), { raw: { width: N, height: N, channels: 1 } })
          .toColourspace('cmyk')
          .jpeg({ quality: 90 })
          .toBuffer(),
      { format: 'jpeg', channels: 4 },
    ],
    [
      'WebP',
      () =>
        sharp(Buffer.from(seven), { raw: { width: N, height: N, channels: 1 } })
          .webp({ lossless: true })
          .toBuffer(),
      { format: 'webp' },
    ],
    [
      'TIFF multi-page (first page)',
      () =>
        sharp(twoPages(), { raw: { width: N, height: N * 2, channels: 1, pageHeight: N } })
          .tiff()
          .toBuffer(),
      { format: 'tiff', pages: 2 },
    ],
    [
      'GIF animated (first frame)',
      () =>
        sharp(twoPages(), { raw: { width: N, height: N * 2, channels: 1, pageHeight: N } })
          .gif()
          .toBuffer(),
      { format: 'gif', pages: 2 },
    ],
  ];

  it.each(cases)('%s: mnist profile gives a centred white-on-black 28x28 digit', async (_name, make, source) => {
    const bytes = await make();
    const r = await preprocessImage(bytes, OPTS);
    expectMnistDigit(r);
    expect(r.metadata.source).toMatchObject({ width: N, height: N, ...source });
    expect(r.metadata.quality.warnings).toContain('inverted');
    expect(r.metadata.dicom).toBeUndefined();
  });

  it.each(cases)('%s: xray profile gives a 224x224 grey image', async (_name, make, source) => {
    const r = await preprocessImage(await make(), XRAY);
    expectXray(r);
    expect(r.metadata.source).toMatchObject(source);
    expect(r.metadata.profile.name).toBe('xray');
  });

  it('multi-page inputs say so in the warnings', async () => {
    const gif = await sharp(twoPages(), { raw: { width: N, height: N * 2, channels: 1, pageHeight: N } })
      .gif()
      .toBuffer();
    const r = await preprocessImage(gif, OPTS);
    expect(r.metadata.quality.warnings).toContain('multi-page');
  });
});

describe('mnist profile', () => {
  it('turns a 200x200 black-on-white digit into an MNIST-like digit centred by mass', async () => {
    const r = await preprocessImage(await grayPng(seven, N, N), OPTS);
    expectMnistDigit(r);
    // Aspect ratio kept: the drawn 7 is 0.40 x 0.60 of the frame (+ stroke), so ~ 2:3.
    const b = bbox(r.pixels, 28, 28, 0.05);
    const ratio = (b.x1 - b.x0 + 1) / (b.y1 - b.y0 + 1);
    expect(ratio).toBeGreaterThan(0.55);
    expect(ratio).toBeLessThan(0.85);
  });

  it('gives the same digit whatever the input resolution and polarity', async () => {
    const big = 1000;
    const a = await preprocessImage(await grayPng(drawSeven(big), big, big), OPTS);
    const inverted = Uint8Array.from(seven, (v) => 255 - v);
    const b = await preprocessImage(await grayPng(inverted, N, N), OPTS);
    const c = await preprocessImage(await grayPng(seven, N, N), OPTS);
    expectMnistDigit(a);
    expectMnistDigit(b);
    expect(b.metadata.quality.warnings).not.toContain('inverted');
    let diffAC = 0;
    let diffBC = 0;
    for (let i = 0; i < 784; i++) {
      diffAC += Math.abs((a.pixels[i] ?? 0) - (c.pixels[i] ?? 0));
      diffBC += Math.abs((b.pixels[i] ?? 0) - (c.pixels[i] ?? 0));
    }
    expect(diffBC / 784).toBeLessThan(0.01);
    expect(diffAC / 784).toBeLessThan(0.05);
  });

  it('ignores salt-and-pepper noise and a grey, slightly uneven background', async () => {
    let seed = 42;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const noisy = Uint8Array.from(seven, (v, i) => {
      const x = i % N;
      let g = 40 + (v / 255) * 160 + x * 0.1 + (rand() - 0.5) * 16; // background ~200, ink ~40
      if (rand() < 0.002) g = 0; // isolated dark specks
      return Math.max(0, Math.min(255, Math.round(g)));
    });
    const r = await preprocessImage(await grayPng(noisy, N, N), OPTS);
    expectMnistDigit(r);
    const clean = await preprocessImage(await grayPng(seven, N, N), OPTS);
    let diff = 0;
    for (let i = 0; i < 784; i++) diff += Math.abs((r.pixels[i] ?? 0) - (clean.pixels[i] ?? 0));
    expect(diff / 784).toBeLessThan(0.06);
  });

  it('keeps light ink on transparency visible (flattened onto black)', async () => {
    const rgba = Buffer.alloc(N * N * 4);
    for (let i = 0; i < N * N; i++) {
      rgba.fill(255, i * 4, i * 4 + 3);
      rgba[i * 4 + 3] = 255 - (seven[i] ?? 0);
    }
    const r = await preprocessImage(
      await sharp(rgba, { raw: { width: N, height: N, channels: 4 } })
        .png()
        .toBuffer(),
      OPTS,
    );
    expectMnistDigit(r);
    expect(r.metadata.quality.warnings).toContain('alpha-flattened-on-black');
  });

  it('flags a blank page and returns zeros instead of failing', async () => {
    const r = await preprocessImage(await grayPng(new Uint8Array(N * N).fill(255), N, N), OPTS);
    expect(r.metadata.quality).toMatchObject({ blank: true, nearConstant: true, inkFraction: 0 });
    expect(r.metadata.quality.warnings).toContain('blank');
    expect(r.pixels.every((v) => v === 0)).toBe(true);
  });

  it('flags tiny ink and low contrast', async () => {
    const tiny = new Uint8Array(N * N).fill(255);
    for (let y = 100; y < 104; y++) for (let x = 100; x < 103; x++) tiny[y * N + x] = 0;
    const t = await preprocessImage(await grayPng(tiny, N, N), OPTS);
    expect(t.metadata.quality.warnings).toContain('tiny-ink');
    expect(t.metadata.quality.inkFraction).toBeCloseTo(12 / (N * N), 5);

    const faint = Uint8Array.from(seven, (v) => 200 + Math.round((v / 255) * 20)); // ink 200, paper 220
    const f = await preprocessImage(await grayPng(faint, N, N), OPTS);
    expect(f.metadata.quality.warnings).toContain('low-contrast');
    expect(f.metadata.quality.contrast).toBeCloseTo(20 / 255, 1);
    expectMnistDigit(f);
  });

  it('passes an MNIST-style 28x28 digit through with its shape intact', async () => {
    const first = await preprocessImage(await grayPng(seven, N, N), OPTS);
    const bytes = await grayPng(
      Uint8Array.from(first.pixels, (v) => Math.round(v * 255)),
      28,
      28,
    );
    const again = await preprocessImage(bytes, OPTS);
    expectMnistDigit(again);
    expect(again.metadata.quality.warnings).not.toContain('inverted');
    let diff = 0;
    for (let i = 0; i < 784; i++) diff += Math.abs((again.pixels[i] ?? 0) - (first.pixels[i] ?? 0));
    expect(diff / 784).toBeLessThan(0.04);
  });
});

describe('xray profile on raster input', () => {
  it('letterboxes a wide image, keeping aspect and padding with 0', async () => {
    const w = 400;
    const h = 200;
    const px = new Uint8Array(w * h).fill(200);
    const r = await preprocessImage(await grayPng(px, w, h), { ...XRAY, xraySize: 100 });
    expect(r.metadata.shape).toEqual([100, 100, 1]);
    // 400x200 -> 100x50, centred: rows 0..24 and 75..99 are padding.
    for (let y = 0; y < 100; y++) {
      const v = r.pixels[y * 100 + 50] ?? NaN;
      if (y < 25 || y >= 75) expect(v).toBe(0);
      else expect(v).toBeCloseTo(200 / 255, 5);
    }
    expect(r.metadata.source).toMatchObject({ width: 400, height: 200 });
  });

  it('keeps 16-bit precision', async () => {
    const px = new Uint16Array(64 * 64).fill(1100);
    const png = await sharp(px, { raw: { width: 64, height: 64, channels: 1 } })
      .toColourspace('grey16')
      .png()
      .toBuffer();
    const r = await preprocessImage(png, { ...XRAY, xraySize: 64 });
    expect(r.pixels[32 * 64 + 32]).toBeCloseTo(1100 / 65535, 5); // 8-bit would give 4/255 = 0.0157
    expect(r.metadata.source.bitsPerSample).toBe(16);
    expect(r.metadata.quality.warnings).toContain('blank');
  });

  it('converts colour to luminance (linear-light, sRGB encoded), with and without alpha', async () => {
    // Pure red: relative luminance 0.2126 in linear light, 0.498 once sRGB encoded.
    const rgb = Buffer.alloc(32 * 32 * 3);
    for (let i = 0; i < 32 * 32; i++) rgb[i * 3] = 255;
    const opaque = await preprocessImage(
      await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } })
        .png()
        .toBuffer(),
      { ...XRAY, xraySize: 32 },
    );
    expect(opaque.pixels[16 * 32 + 16]).toBeCloseTo(0.498, 2);
    const rgba = Buffer.alloc(32 * 32 * 4);
    for (let i = 0; i < 32 * 32; i++) {
      rgba[i * 4] = 255;
      rgba[i * 4 + 3] = 255;
    }
    const alpha = await preprocessImage(
      await sharp(rgba, { raw: { width: 32, height: 32, channels: 4 } })
        .png()
        .toBuffer(),
      { ...XRAY, xraySize: 32 },
    );
    expect(alpha.pixels[16 * 32 + 16]).toBeCloseTo(0.498, 2);
  });
});
