import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preprocessImage } from '../../../src/imaging';
import { DEFAULT_GROUP_PATTERN, compileGroupPattern, groupKey, loadImageFolder } from '../../../src/ml/data/folder';
import { LabeledImages, splitValidation } from '../../../src/ml/data/dataset';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'chest-xray');
const SIZE = 32;

function groupsOf(d: LabeledImages): Set<string> {
  return new Set(d.groups ?? []);
}

function shared(a: Set<string>, b: Set<string>): string[] {
  return [...a].filter((g) => b.has(g));
}

describe('radiograph folders (xray profile)', () => {
  const cache = mkdtempSync(join(tmpdir(), 'xray-cache-'));
  afterAll(() => rmSync(cache, { recursive: true, force: true }));

  it("the default patient rule finds the patients of the data set's names", () => {
    const re = compileGroupPattern(DEFAULT_GROUP_PATTERN);
    expect(groupKey(re, 'IM-0553-0001.jpeg').key).toBe('IM-0553');
    expect(groupKey(re, 'IM-0553-0001-0002.jpeg').key).toBe('IM-0553');
    expect(groupKey(re, 'NORMAL2-IM-1345-0001-0001.jpeg').key).toBe('NORMAL2-IM-1345');
    expect(groupKey(re, 'person447_virus_921_1.jpeg').key).toBe('person447');
    expect(groupKey(re, 'person447_bacteria_1932.jpeg').key).toBe('person447');
    expect(groupKey(re, 'scan.png')).toEqual({ key: 'scan.png', matched: false });
    expect(() => compileGroupPattern('[')).toThrow(/not a regular expression/);
    expect(() => compileGroupPattern('^IM-\\d+')).toThrow(/no capturing group/);
  });

  it('preprocesses with the upload code, keeps every patient on one side of the test and validation splits', async () => {
    const d = await loadImageFolder(FIXTURES, {
      profile: 'xray',
      xraySize: SIZE,
      groupPattern: DEFAULT_GROUP_PATTERN,
      testFraction: 0.3,
      cacheDir: cache,
    });
    const files = ['NORMAL', 'PNEUMONIA'].flatMap((c) => readdirSync(join(FIXTURES, c)).map((f) => `${c}/${f}`));
    expect(d.report.loaded).toBe(files.length);
    expect(d.report.skipped).toEqual([]);
    expect(d.report.preprocessing.profile).toBe('xray');
    // 8 NORMAL patients (IM-0115, -0117, -0119, -0122, -0125, -0553, -0629, NORMAL2-IM-1345) and 6 PNEUMONIA ones.
    expect(d.report.grouping).toEqual({ pattern: DEFAULT_GROUP_PATTERN, groups: 14, unmatched: 0 });
    expect(d.train.shape).toEqual([SIZE, SIZE, 1]);
    expect(d.train.classNames).toEqual(['NORMAL', 'PNEUMONIA']);
    expect(d.train.labels.length + d.test.labels.length).toBe(files.length);
    expect(d.test.labels.length).toBeGreaterThan(0);
    expect(shared(groupsOf(d.train), groupsOf(d.test))).toEqual([]);
    const v = splitValidation(d.train, 0.3, 1);
    expect(v.validation.labels.length).toBeGreaterThan(0);
    expect(shared(groupsOf(v.train), groupsOf(v.validation))).toEqual([]);
    expect(v.train.labels.length + v.validation.labels.length).toBe(d.train.labels.length);

    // The pixels are exactly what an upload of the same file becomes.
    const name = d.train.names?.[0] as string;
    const direct = await preprocessImage(readFileSync(join(FIXTURES, name)), {
      profile: 'xray',
      xraySize: SIZE,
      maxInputBytes: 1 << 26,
      maxPixels: 5e7,
    });
    expect(Array.from(d.train.images.subarray(0, SIZE * SIZE))).toEqual(Array.from(direct.pixels));
  });

  it('a second load decodes nothing; a damaged cache entry is decoded again', async () => {
    const opts = {
      profile: 'xray' as const,
      xraySize: SIZE,
      groupPattern: DEFAULT_GROUP_PATTERN,
      testFraction: 0.3,
      cacheDir: cache,
    };
    const first = await loadImageFolder(FIXTURES, opts);
    expect(first.report.decoded).toBe(0); // the test above filled the cache
    expect(first.report.cached).toBe(first.report.loaded);
    // Damage one entry: it is decoded again, with the same pixels.
    const sub = readdirSync(cache)[0] as string;
    const entry = join(cache, sub, readdirSync(join(cache, sub))[0] as string);
    writeFileSync(entry, 'not an npy file');
    const again = await loadImageFolder(FIXTURES, opts);
    expect(again.report.decoded).toBe(1);
    expect(Array.from(again.train.images)).toEqual(Array.from(first.train.images));
    // Another size is another cache key.
    const bigger = await loadImageFolder(FIXTURES, { ...opts, xraySize: SIZE * 2 });
    expect(bigger.report.cached).toBe(0);
    expect(bigger.train.shape).toEqual([SIZE * 2, SIZE * 2, 1]);
  });
});
