/** The two preprocessing profiles and the quality signals computed along the way. */
import { Gray, UnitHistogram, borderMedian, resample } from './gray';

export const PROFILE_VERSIONS = { mnist: '1.0.0', xray: '1.0.0' } as const;

export interface Quality {
  blank: boolean;
  nearConstant: boolean;
  inkFraction: number;
  contrast: number;
  warnings: string[];
}

export interface ProfileOutput {
  pixels: Float32Array;
  shape: [number, number, 1];
  quality: Quality;
}

/** MNIST geometry: digit fitted in FIT x FIT, centred by mass in SIZE x SIZE. */
const SIZE = 28;
const FIT = 20;
/** Larger inputs are first area-averaged to this many pixels on the long side (speed, denoising). */
export const MNIST_WORKING_SIDE = 384;

/** Size of w x h scaled to fit inside side x side keeping aspect (each at least 1); undefined if it already fits. */
export function fitInside(w: number, h: number, side: number): { width: number; height: number } | undefined {
  const scale = Math.min(side / w, side / h);
  if (scale >= 1) return undefined;
  return {
    width: Math.min(side, Math.max(1, Math.round(w * scale))),
    height: Math.min(side, Math.max(1, Math.round(h * scale))),
  };
}

function sampleStride(n: number): number {
  return Math.max(1, Math.floor(n / 262_144));
}

function stdDev(data: Float32Array, stride: number): number {
  let s = 0;
  let s2 = 0;
  let k = 0;
  for (let i = 0; i < data.length; i += stride) {
    const v = data[i] ?? 0;
    s += v;
    s2 += v * v;
    k++;
  }
  if (k === 0) return 0;
  const m = s / k;
  return Math.sqrt(Math.max(0, s2 / k - m * m));
}

function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

function shrinkTo(img: Gray, side: number): Gray {
  const fit = fitInside(img.width, img.height, side);
  if (!fit) return img;
  return {
    width: fit.width,
    height: fit.height,
    data: resample(img, { x: 0, y: 0, w: img.width, h: img.height }, fit.width, fit.height),
  };
}

/**
 * 8-connected components of `mask`; returns the label of each pixel (0 = background) and the
 * area of each label.
 */
function components(mask: Uint8Array, w: number, h: number): { labels: Int32Array; areas: number[] } {
  const labels = new Int32Array(w * h);
  const parent: number[] = [0];
  const find = (a: number): number => {
    let r = a;
    while ((parent[r] ?? r) !== r) r = parent[r] ?? r;
    while ((parent[a] ?? a) !== r) {
      const next = parent[a] ?? a;
      parent[a] = r;
      a = next;
    }
    return r;
  };
  const union = (a: number, b: number): number => {
    const ra = find(a);
    const rb = find(b);
    if (ra === rb) return ra;
    const lo = Math.min(ra, rb);
    parent[Math.max(ra, rb)] = lo;
    return lo;
  };
  const link = (label: number, j: number): number => {
    const l = labels[j] ?? 0;
    if (l === 0) return label;
    return label === 0 ? find(l) : union(label, l);
  };
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const i = row + x;
      if (!mask[i]) continue;
      let label = 0;
      if (x > 0) label = link(label, i - 1);
      if (y > 0) {
        if (x > 0) label = link(label, i - w - 1);
        label = link(label, i - w);
        if (x < w - 1) label = link(label, i - w + 1);
      }
      if (label === 0) {
        label = parent.length;
        parent.push(label);
      }
      labels[i] = label;
    }
  }
  const areas = new Array<number>(parent.length).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i] ?? 0;
    if (l !== 0) {
      const r = find(l);
      labels[i] = r;
      areas[r] = (areas[r] ?? 0) + 1;
    }
  }
  return { labels, areas };
}

/**
 * mnist: white digit on black, fitted into 20x20 (aspect kept, antialiased) and placed in 28x28 so
 * that its centre of mass sits at the field's centre (14, 14), where pixel (i, j) covers
 * [i, i+1) x [j, j+1) (equivalently index coordinates 13.5, 13.5), as in the original MNIST.
 */
export function mnistProfile(input: Gray): ProfileOutput {
  const img = shrinkTo(input, MNIST_WORKING_SIDE);
  const { width: w, height: h, data } = img;
  const n = w * h;
  const stride = sampleStride(n);
  const warnings: string[] = [];
  const { invert, bg } = polarity(img, stride);
  const std = stdDev(data, stride);
  // Signed difference from the background, ink positive.
  const diff = new Float32Array(n);
  for (let i = 0; i < n; i++) diff[i] = (invert ? 1 - (data[i] ?? 0) : (data[i] ?? 0)) - bg;
  const peak = inkPeak(diff);
  const threshold = Math.max(4 * noiseSigma(diff, stride), 0.25 * peak, 0.02);
  const mask = new Uint8Array(n);
  let any = false;
  for (let i = 0; i < n; i++) {
    if ((diff[i] ?? 0) > threshold) {
      mask[i] = 1;
      any = true;
    }
  }
  const blankSignal = peak < 0.05 || !any;
  const digit = blankSignal ? undefined : placeDigit({ diff, mask, w, h, threshold, peak }, warnings);
  const pixels = digit?.pixels ?? new Float32Array(SIZE * SIZE);
  const inkFraction = digit?.inkFraction ?? 0;
  const contrast = Math.max(0, digit?.inkLevel ?? peak);
  const quality = qualityOf({ blank: blankSignal, std, contrast, inkFraction, tinyInk: 0.002, warnings });
  if (!quality.blank && inkFraction > 0.5) quality.warnings.push('large-ink');
  if (invert) quality.warnings.push('inverted');
  return { pixels, shape: [SIZE, SIZE, 1], quality };
}

/** Polarity: ink is the tail farther from the background (border median); bg is the background level with ink made positive. */
function polarity(img: Gray, stride: number): { invert: boolean; bg: number } {
  const hist = new UnitHistogram(img.data, stride);
  const border = borderMedian(img);
  const lo = hist.quantile(0.001);
  const hi = hist.quantile(0.999);
  const invert = border - lo > hi - border;
  return { invert, bg: invert ? 1 - border : border };
}

/** Noise level of the ink difference: 1.4826 x its MAD, from a histogram over [-1, 1] (every `stride`-th pixel). */
function noiseSigma(diff: Float32Array, stride: number): number {
  const n = diff.length;
  const mapped = new Float32Array(Math.ceil(n / stride));
  for (let i = 0, k = 0; i < n; i += stride, k++) mapped[k] = ((diff[i] ?? 0) + 1) / 2;
  const dh = new UnitHistogram(mapped);
  const med = dh.quantile(0.5) * 2 - 1;
  const absDev = new Float32Array(mapped.length);
  for (let i = 0; i < mapped.length; i++) absDev[i] = Math.abs((mapped[i] ?? 0) * 2 - 1 - med) / 2;
  const mad = new UnitHistogram(absDev).quantile(0.5) * 2;
  return 1.4826 * mad;
}

/** Ink peak: the 5th largest difference (one hot pixel cannot set it; 12 real ink pixels can), at least 0. */
function inkPeak(diff: Float32Array): number {
  const n = diff.length;
  const top = new Float32Array(5).fill(-Infinity); // ascending
  for (let i = 0; i < n; i++) {
    const v = diff[i] ?? 0;
    if (v <= (top[0] ?? 0)) continue;
    let k = 0;
    while (k + 1 < top.length && v > (top[k + 1] ?? 0)) {
      top[k] = top[k + 1] ?? 0;
      k++;
    }
    top[k] = v;
  }
  return Math.max(0, n >= top.length ? (top[0] ?? 0) : Math.max(...diff));
}

interface InkField {
  /** Ink-positive difference from the background, w x h. */
  diff: Float32Array;
  /** 1 where diff exceeds the threshold. */
  mask: Uint8Array;
  w: number;
  h: number;
  threshold: number;
  peak: number;
}

/** The ink without specks (components of at least 2% of the largest one's area): its bounding box and values. */
function keptInk(f: InkField): { box: { x0: number; y0: number; x1: number; y1: number }; values: Float32Array } {
  const { w, h, diff } = f;
  const { labels, areas } = components(f.mask, w, h);
  const largest = Math.max(...areas);
  const minArea = largest >= 50 ? Math.max(2, 0.02 * largest) : 1;
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  let ink = 0;
  const inkValues = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const l = labels[y * w + x] ?? 0;
      if (l === 0 || (areas[l] ?? 0) < minArea) continue;
      inkValues[ink++] = diff[y * w + x] ?? 0;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  return { box: { x0, y0, x1, y1 }, values: inkValues.subarray(0, ink) };
}

/**
 * The kept ink cropped with a one-pixel margin (antialiased edges), stretched to [0, 1] (its 90th
 * percentile to 1, a soft floor at half the threshold), fitted into FIT x FIT and placed in the
 * SIZE x SIZE field by its centre of mass ('off-centre' in `warnings` when the field's edge stops it).
 */
function placeDigit(f: InkField, warnings: string[]): { pixels: Float32Array; inkFraction: number; inkLevel: number } {
  const { w, h, diff } = f;
  const { box, values } = keptInk(f);
  const inkFraction = values.length / (w * h);
  const x0 = Math.max(0, box.x0 - 1);
  const y0 = Math.max(0, box.y0 - 1);
  const x1 = Math.min(w - 1, box.x1 + 1);
  const y1 = Math.min(h - 1, box.y1 + 1);
  const cw = x1 - x0 + 1;
  const ch = y1 - y0 + 1;
  const kept = values.sort();
  const inkLevel = kept[Math.floor(0.9 * (kept.length - 1))] ?? f.peak;
  const floor = f.threshold / 2;
  const span = Math.max(1e-6, inkLevel - floor);
  const crop = new Float32Array(cw * ch);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      const v = ((diff[(y0 + y) * w + x0 + x] ?? 0) - floor) / span;
      crop[y * cw + x] = v <= 0 ? 0 : v >= 1 ? 1 : v;
    }
  }
  const nw = cw >= ch ? FIT : Math.max(1, Math.round((FIT * cw) / ch));
  const nh = ch >= cw ? FIT : Math.max(1, Math.round((FIT * ch) / cw));
  const digit = resample({ width: cw, height: ch, data: crop }, { x: 0, y: 0, w: cw, h: ch }, nw, nh);
  return { pixels: centredByMass(digit, nw, nh, warnings), inkFraction, inkLevel };
}

/** An nw x nh digit placed in the SIZE x SIZE field with its centre of mass at the centre, as far as the field allows. */
function centredByMass(digit: Float32Array, nw: number, nh: number, warnings: string[]): Float32Array {
  let s = 0;
  let sx = 0;
  let sy = 0;
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) {
      const v = digit[y * nw + x] ?? 0;
      s += v;
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
    }
  }
  const cx = s > 0 ? sx / s : nw / 2;
  const cy = s > 0 ? sy / s : nh / 2;
  const wantX = Math.round(SIZE / 2 - cx);
  const wantY = Math.round(SIZE / 2 - cy);
  const ox = Math.min(SIZE - nw, Math.max(0, wantX));
  const oy = Math.min(SIZE - nh, Math.max(0, wantY));
  if (ox !== wantX || oy !== wantY) warnings.push('off-centre');
  const pixels = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) pixels[(oy + y) * SIZE + ox + x] = Math.min(1, Math.max(0, digit[y * nw + x] ?? 0));
  }
  return pixels;
}

/**
 * xray: the grey image (already windowed for DICOM) letterboxed into size x size: scaled to fit
 * keeping aspect ratio (antialiased), centred, padded with 0.
 */
export function xrayProfile(img: Gray, size: number): ProfileOutput {
  const { width: w, height: h, data } = img;
  const n = w * h;
  const stride = sampleStride(n);
  const hist = new UnitHistogram(data, stride);
  const contrast = Math.max(0, hist.quantile(0.99) - hist.quantile(0.01));
  const border = borderMedian(img);
  let fg = 0;
  let k = 0;
  for (let i = 0; i < n; i += stride, k++) if (Math.abs((data[i] ?? 0) - border) > 0.1) fg++;
  const inkFraction = k > 0 ? fg / k : 0;
  const std = stdDev(data, stride);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i += stride) {
    const v = data[i] ?? 0;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const warnings: string[] = [];
  const scale = Math.min(size / w, size / h);
  const nw = Math.min(size, Math.max(1, Math.round(w * scale)));
  const nh = Math.min(size, Math.max(1, Math.round(h * scale)));
  if (scale > 1) warnings.push('upscaled');
  const scaled = resample(img, { x: 0, y: 0, w, h }, nw, nh);
  const pixels = new Float32Array(size * size);
  const ox = Math.floor((size - nw) / 2);
  const oy = Math.floor((size - nh) / 2);
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) pixels[(oy + y) * size + ox + x] = Math.min(1, Math.max(0, scaled[y * nw + x] ?? 0));
  }
  const quality = qualityOf({ blank: max - min < 2 / 255, std, contrast, inkFraction, tinyInk: 0.01, warnings });
  return { pixels, shape: [size, size, 1], quality };
}

function qualityOf(q: {
  blank: boolean;
  std: number;
  contrast: number;
  inkFraction: number;
  tinyInk: number;
  warnings: string[];
}): Quality {
  const warnings = [...q.warnings];
  const nearConstant = q.blank || q.std < 0.02;
  if (q.blank) warnings.push('blank');
  else {
    if (nearConstant) warnings.push('near-constant');
    if (q.contrast < 0.15) warnings.push('low-contrast');
    if (q.inkFraction < q.tinyInk) warnings.push('tiny-ink');
  }
  return { blank: q.blank, nearConstant, inkFraction: round4(q.inkFraction), contrast: round4(q.contrast), warnings };
}
