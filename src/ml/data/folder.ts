/**
 * A folder of labeled images, one subfolder per class (`<dir>/<class>/<file>`), each image run
 * through the imaging library's preprocessing (default: the `mnist` profile, as uploads are).
 * Images the preprocessing rejects are skipped and reported, not fatal.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { preprocessImage, ImageRejection } from '../../imaging';
import { PROFILE_VERSIONS } from '../../imaging/profiles';
import { LabeledImages, TrainTestSplit, sortClassNames, validate } from './dataset';
import { mapLimit, splitByName } from './split';

export type Preprocess = (bytes: Buffer, name: string) => Promise<{ pixels: Float32Array; shape: [number, number, number] }>;

export interface FolderOptions {
  /** Turns file bytes into model input. Default: preprocessImage with the mnist profile and the limits below. */
  preprocess?: Preprocess;
  /** Default limits of the default preprocessing: 64 MB, 50 megapixels (the config defaults). */
  maxInputBytes?: number;
  maxPixels?: number;
  /** Class names in index order. Default: the subfolder names (numeric order when all are integers). */
  classNames?: string[];
  /** Share of images (chosen by a hash of their path, stable as the folder grows) held out as test data. Default 0.2. */
  testFraction?: number;
  /** Files read and preprocessed at once. Default 8. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LoadReport {
  loaded: number;
  skipped: Array<{ name: string; reason: string }>;
  preprocessing: { profile: string; version: string };
}

export function mnistPreprocess(opts: { maxInputBytes?: number; maxPixels?: number } = {}): Preprocess {
  return async (bytes) => {
    const r = await preprocessImage(bytes, { profile: 'mnist', xraySize: 224, maxInputBytes: opts.maxInputBytes ?? 64 * 1024 * 1024, maxPixels: opts.maxPixels ?? 50_000_000 });
    return { pixels: r.pixels, shape: r.metadata.shape };
  };
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await listFiles(dir, p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** Loads `<dir>/<class>/**` and splits it into train and test by a hash of each file's path. */
export async function loadImageFolder(dir: string, opts: FolderOptions = {}): Promise<TrainTestSplit & { report: LoadReport }> {
  const classDirs = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  if (classDirs.length < 2) throw new Error(`${dir} needs one subfolder per class (at least two); found ${classDirs.length}`);
  const classNames = opts.classNames ?? sortClassNames(classDirs);
  const unknown = classDirs.filter((c) => !classNames.includes(c));
  if (unknown.length > 0) throw new Error(`${dir} has subfolders that are not classes: ${unknown.join(', ')}`);
  const files: Array<{ name: string; label: number }> = [];
  for (const [label, c] of classNames.entries()) {
    if (!classDirs.includes(c)) continue;
    for (const f of await listFiles(join(dir, c))) files.push({ name: `${c}/${f}`, label });
  }
  const preprocess = opts.preprocess ?? mnistPreprocess(opts);
  const skipped: LoadReport['skipped'] = [];
  let done = 0;
  const results = await mapLimit(files, opts.concurrency ?? 8, async (f) => {
    try {
      const r = await preprocess(await readFile(join(dir, f.name)), f.name);
      return { ...f, ...r };
    } catch (e) {
      if (!(e instanceof ImageRejection) && opts.preprocess === undefined) throw e;
      skipped.push({ name: f.name, reason: e instanceof Error ? e.message : String(e) });
      return undefined;
    } finally {
      opts.onProgress?.(++done, files.length);
    }
  });
  const ok = results.filter((r): r is NonNullable<typeof r> => r !== undefined);
  const all = assemble(ok, classNames, `folder:${dir}`);
  const split = splitByName(all, opts.testFraction ?? 0.2);
  return { ...split, report: { loaded: ok.length, skipped, preprocessing: { profile: 'mnist', version: PROFILE_VERSIONS.mnist } } };
}

/** Packs per-image results (all of one shape) into LabeledImages. */
export function assemble(
  items: ReadonlyArray<{ name: string; label: number; pixels: Float32Array; shape: [number, number, number] }>,
  classNames: string[],
  source: string,
): LabeledImages {
  const first = items[0];
  if (first === undefined) throw new Error(`${source}: no usable images`);
  const shape = first.shape;
  const size = shape[0] * shape[1] * shape[2];
  const images = new Float32Array(items.length * size);
  const labels = new Int32Array(items.length);
  items.forEach((it, i) => {
    if (it.pixels.length !== size) throw new Error(`${source}: ${it.name} has ${it.pixels.length} values, the first image ${shape.join('x')}`);
    images.set(it.pixels, i * size);
    labels[i] = it.label;
  });
  return validate({ images, labels, shape, classNames, source, names: items.map((it) => it.name) });
}
