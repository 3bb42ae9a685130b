/**
 * A folder of labeled images, one subfolder per class (`<dir>/<class>/<file>`), each image run
 * through the imaging library's preprocessing in the chosen profile (mnist or xray): the very code
 * that preprocesses an upload, so a model never sees pixels prepared differently from what it
 * scores. Images the preprocessing rejects are skipped and reported, not fatal.
 *
 * Decoded images are cached on disk as .npy files keyed by the file's SHA-256 and the profile, its
 * version and output size, so a second run over the same folder decodes nothing. With a group
 * pattern (a regular expression whose first group is the patient key, matched against the file
 * name), the test split and every validation split keep a patient's images on one side.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { preprocessImage, ImageRejection, encodeNpy, decodeNpy } from '../../imaging';
import { PROFILE_VERSIONS } from '../../imaging/profiles';
import { LabeledImages, TrainTestSplit, sortClassNames, validate } from './dataset';
import { mapLimit, splitByName } from './split';

export type Preprocess = (
  bytes: Buffer,
  name: string,
) => Promise<{ pixels: Float32Array; shape: [number, number, number] }>;

export type ProfileName = 'mnist' | 'xray';

/**
 * Default patient key of a radiograph's file name: the leading run of dash-separated words ending
 * in the first number, e.g. IM-0115-0001.jpeg and IM-0115-0001-0002.jpeg -> IM-0115,
 * NORMAL2-IM-0007-0001.jpeg -> NORMAL2-IM-0007, person1000_bacteria_2931.jpeg and
 * person1000_virus_1681.jpeg -> person1000. On the Kermany chest X-ray training split it finds
 * the data set's 1,211 NORMAL and 1,635 PNEUMONIA patients, and every byte-identical pair falls
 * within one of them.
 */
export const DEFAULT_GROUP_PATTERN = '^((?:[A-Za-z]+\\d*-)*[A-Za-z]+[-_]?\\d+)(?=[-_.])';

export interface FolderOptions {
  /** Turns file bytes into model input. Default: preprocessImage in `profile` with the limits below. */
  preprocess?: Preprocess;
  /** Preprocessing profile of the default preprocess. Default mnist. */
  profile?: ProfileName;
  /** Output side of the xray profile. Default 128 (the config default). */
  xraySize?: number;
  /** Default limits of the default preprocessing: 64 MB, 50 megapixels (the config defaults). */
  maxInputBytes?: number;
  maxPixels?: number;
  /** Folder of the decoded-image cache (default preprocessing only); undefined: no cache. */
  cacheDir?: string;
  /** Patient key: a regular expression matched against the file name, whose first group is the key. Files it does not match are their own group. Undefined: no groups (split by image). */
  groupPattern?: string;
  /** Class names in index order. Default: the subfolder names (numeric order when all are integers). */
  classNames?: string[];
  /** Share of images (chosen by a hash of their path, or of their group, stable as the folder grows) held out as test data. Default 0.2; 0 keeps none. */
  testFraction?: number;
  /** Files read and preprocessed at once. Default 8. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LoadReport {
  loaded: number;
  skipped: Array<{ name: string; reason: string }>;
  preprocessing: { profile: string; version: string };
  /** Images read from the decoded-image cache / decoded now (folders with a cache). */
  cached?: number;
  decoded?: number;
  /** The patient rule, when there is one: its pattern, how many groups, how many names it did not match. */
  grouping?: { pattern: string; groups: number; unmatched: number };
}

export function profilePreprocess(
  opts: { profile?: ProfileName; xraySize?: number; maxInputBytes?: number; maxPixels?: number } = {},
): Preprocess {
  const profile = opts.profile ?? 'mnist';
  return async (bytes) => {
    const r = await preprocessImage(bytes, {
      profile,
      xraySize: opts.xraySize ?? 128,
      maxInputBytes: opts.maxInputBytes ?? 64 * 1024 * 1024,
      maxPixels: opts.maxPixels ?? 50_000_000,
    });
    return { pixels: r.pixels, shape: r.metadata.shape };
  };
}

/** The mnist profile's preprocessing (what uploads in the default profile go through). */
export function mnistPreprocess(opts: { maxInputBytes?: number; maxPixels?: number } = {}): Preprocess {
  return profilePreprocess({ ...opts, profile: 'mnist' });
}

/**
 * Wraps a preprocessing with an on-disk cache: <dir>/<key>.npy where key hashes the file's bytes
 * and `variant` (profile, version, size). Writes go to a temporary name first, so a killed run
 * leaves no torn entry.
 */
export function cachedPreprocess(
  inner: Preprocess,
  dir: string,
  variant: string,
  counts: { cached: number; decoded: number },
): Preprocess {
  let made = false;
  return async (bytes, name) => {
    const key = createHash('sha256').update(variant).update('\0').update(bytes).digest('hex');
    const file = join(dir, key.slice(0, 2), `${key}.npy`);
    const hit = await readFile(file).catch(() => undefined);
    if (hit !== undefined) {
      try {
        const { data, shape } = decodeNpy(hit);
        if (shape.length === 3) {
          counts.cached++;
          return { pixels: data, shape: shape as [number, number, number] };
        }
      } catch {
        // A damaged entry is decoded again and replaced.
      }
    }
    const r = await inner(bytes, name);
    counts.decoded++;
    if (!made) {
      await mkdir(dir, { recursive: true });
      made = true;
    }
    await mkdir(join(dir, key.slice(0, 2)), { recursive: true });
    // Unique per write: byte-identical files (the same image twice) may be decoded at once.
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, encodeNpy(r.pixels, r.shape));
    await rename(tmp, file);
    return r;
  };
}

/** The group key of a file name under `pattern` (first capture group), or the name itself when it does not match. */
export function groupKey(pattern: RegExp, fileName: string): { key: string; matched: boolean } {
  const m = pattern.exec(fileName);
  const key = m?.[1];
  return key === undefined || key === '' ? { key: fileName, matched: false } : { key, matched: true };
}

/** Compiles a --group pattern, with an error that names it. */
export function compileGroupPattern(pattern: string): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (e) {
    throw new Error(
      `group pattern ${JSON.stringify(pattern)} is not a regular expression: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  if (!/\((?!\?)/.test(pattern))
    throw new Error(
      `group pattern ${JSON.stringify(pattern)} has no capturing group: its first group must be the patient key`,
    );
  return re;
}

/** Files under dir (relative paths with /, sorted), skipping dot-files and dot-folders. */
export async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await listFiles(dir, p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** Loads `<dir>/<class>/**` and splits it into train and test by a hash of each file's path (or patient). */
export async function loadImageFolder(
  dir: string,
  opts: FolderOptions = {},
): Promise<TrainTestSplit & { report: LoadReport }> {
  const classDirs = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name);
  if (classDirs.length < 2)
    throw new Error(`${dir} needs one subfolder per class (at least two); found ${classDirs.length}`);
  const classNames = opts.classNames ?? sortClassNames(classDirs);
  const unknown = classDirs.filter((c) => !classNames.includes(c));
  if (unknown.length > 0) throw new Error(`${dir} has subfolders that are not classes: ${unknown.join(', ')}`);
  const files: Array<{ name: string; label: number }> = [];
  for (const [label, c] of classNames.entries()) {
    if (!classDirs.includes(c)) continue;
    for (const f of await listFiles(join(dir, c))) files.push({ name: `${c}/${f}`, label });
  }
  const profile = opts.profile ?? 'mnist';
  const size = profile === 'xray' ? (opts.xraySize ?? 128) : 28;
  const counts = { cached: 0, decoded: 0 };
  let preprocess = opts.preprocess ?? profilePreprocess({ ...opts, profile });
  if (opts.preprocess === undefined && opts.cacheDir !== undefined)
    preprocess = cachedPreprocess(preprocess, opts.cacheDir, `${profile}:${PROFILE_VERSIONS[profile]}:${size}`, counts);
  const group = opts.groupPattern === undefined ? undefined : compileGroupPattern(opts.groupPattern);
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
  let grouping: LoadReport['grouping'];
  let groups: string[] | undefined;
  if (group !== undefined) {
    let unmatched = 0;
    groups = ok.map((r) => {
      const g = groupKey(group, basename(r.name));
      if (!g.matched) unmatched++;
      return g.key;
    });
    grouping = { pattern: group.source, groups: new Set(groups).size, unmatched };
  }
  const all = assemble(ok, classNames, `folder:${dir}`, groups);
  const split = splitByName(all, opts.testFraction ?? 0.2);
  const cacheUse =
    opts.preprocess === undefined && opts.cacheDir !== undefined
      ? { cached: counts.cached, decoded: counts.decoded }
      : {};
  const report: LoadReport = {
    loaded: ok.length,
    skipped,
    preprocessing: { profile, version: PROFILE_VERSIONS[profile] },
    ...cacheUse,
    ...(grouping ? { grouping } : {}),
  };
  return { ...split, report };
}

/** Packs per-image results (all of one shape) into LabeledImages. */
export function assemble(
  items: ReadonlyArray<{ name: string; label: number; pixels: Float32Array; shape: [number, number, number] }>,
  classNames: string[],
  source: string,
  groups?: string[],
): LabeledImages {
  const first = items[0];
  if (first === undefined) throw new Error(`${source}: no usable images`);
  const shape = first.shape;
  const size = shape[0] * shape[1] * shape[2];
  const images = new Float32Array(items.length * size);
  const labels = new Int32Array(items.length);
  items.forEach((it, i) => {
    if (it.pixels.length !== size)
      throw new Error(`${source}: ${it.name} has ${it.pixels.length} values, the first image ${shape.join('x')}`);
    images.set(it.pixels, i * size);
    labels[i] = it.label;
  });
  return validate({
    images,
    labels,
    shape,
    classNames,
    source,
    names: items.map((it) => it.name),
    ...(groups ? { groups } : {}),
  });
}
