/** A single-channel float image, row-major, values normally in [0, 1]. */
export interface Gray {
  width: number;
  height: number;
  data: Float32Array;
}

interface Taps {
  start: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  stride: number;
}

/**
 * Tap table of a separable triangle (bilinear) filter whose support widens with the reduction
 * factor, as in PIL's antialiased resize: downscaling averages every source pixel under the
 * footprint (area-averaging), upscaling interpolates bilinearly.
 */
function taps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = filterScale; // triangle radius 1, scaled
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float32Array(outSize * stride);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support));
    const hi = Math.min(inSize, Math.ceil(centre + support));
    let total = 0;
    let n = 0;
    for (let j = lo; j < hi && n < stride; j++, n++) {
      const x = Math.abs((j + 0.5 - centre) / filterScale);
      const w = x < 1 ? 1 - x : 0;
      weights[i * stride + n] = w;
      total += w;
    }
    if (total <= 0) {
      // Degenerate footprint: nearest pixel.
      const j = Math.min(inSize - 1, Math.max(0, Math.floor(centre)));
      start[i] = j;
      count[i] = 1;
      weights[i * stride] = 1;
      continue;
    }
    for (let k = 0; k < n; k++) weights[i * stride + k] = (weights[i * stride + k] ?? 0) / total;
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

/** Resamples the region (x, y, w, h) of `src` to outW x outH (antialiased). */
export function resample(
  src: Gray,
  region: { x: number; y: number; w: number; h: number },
  outW: number,
  outH: number,
): Float32Array {
  const { x: rx, y: ry, w: rw, h: rh } = region;
  if (rx === 0 && ry === 0 && rw === src.width && rh === src.height && outW === rw && outH === rh)
    return src.data.slice();
  const tx = taps(rw, outW);
  const ty = taps(rh, outH);
  const sw = src.width;
  const s = src.data;
  // Horizontal pass over the rows of the region.
  const tmp = new Float32Array(outW * rh);
  for (let yy = 0; yy < rh; yy++) {
    const rowBase = (ry + yy) * sw + rx;
    for (let i = 0; i < outW; i++) {
      const st = tx.start[i] ?? 0;
      const n = tx.count[i] ?? 0;
      const wb = i * tx.stride;
      let acc = 0;
      for (let k = 0; k < n; k++) acc += (s[rowBase + st + k] ?? 0) * (tx.weights[wb + k] ?? 0);
      tmp[yy * outW + i] = acc;
    }
  }
  // Vertical pass.
  const out = new Float32Array(outW * outH);
  for (let j = 0; j < outH; j++) {
    const st = ty.start[j] ?? 0;
    const n = ty.count[j] ?? 0;
    const wb = j * ty.stride;
    const ob = j * outW;
    for (let k = 0; k < n; k++) {
      const w = ty.weights[wb + k] ?? 0;
      const rb = (st + k) * outW;
      for (let i = 0; i < outW; i++) out[ob + i] = (out[ob + i] ?? 0) + (tmp[rb + i] ?? 0) * w;
    }
  }
  return out;
}

/** Histogram-based percentiles of values in [0, 1] (4096 bins: resolution 1/4096). */
export class UnitHistogram {
  static readonly BINS = 4096;
  readonly counts = new Float64Array(UnitHistogram.BINS);
  total = 0;

  constructor(data: Float32Array, stride = 1) {
    const B = UnitHistogram.BINS;
    for (let i = 0; i < data.length; i += stride) {
      const v = data[i] ?? 0;
      const b = v <= 0 ? 0 : v >= 1 ? B - 1 : Math.floor(v * B);
      this.counts[b] = (this.counts[b] ?? 0) + 1;
      this.total++;
    }
  }

  /** Value below which fraction `q` of the samples lie (bin centre). */
  quantile(q: number): number {
    const B = UnitHistogram.BINS;
    const target = q * this.total;
    let acc = 0;
    for (let b = 0; b < B; b++) {
      acc += this.counts[b] ?? 0;
      if (acc >= target && acc > 0) return (b + 0.5) / B;
    }
    return 1;
  }
}

/** Median of the pixels in a frame `band` pixels wide around the image. */
export function borderMedian(img: Gray): number {
  const { width: w, height: h, data } = img;
  const band = Math.max(1, Math.round(Math.min(w, h) * 0.03));
  const total = 2 * band * (w + h);
  const step = Math.max(1, Math.floor(total / 4096)); // sample at most ~4k border pixels
  const vals: number[] = [];
  let k = 0;
  for (let y = 0; y < h; y++) {
    const edgeRow = y < band || y >= h - band;
    const base = y * w;
    for (let x = 0; x < w; x++) {
      if (!edgeRow && x === band && w - band > band) x = w - band;
      if (k++ % step === 0) vals.push(data[base + x] ?? 0);
    }
  }
  const sorted = Float32Array.from(vals).sort();
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
