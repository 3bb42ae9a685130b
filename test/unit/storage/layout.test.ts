import {
  CONTAINERS,
  INVALID_NAMES_FOLDER,
  InvalidNameError,
  invalidUploadName,
  matchTriggerPath,
  MAX_BLOB_NAME,
  paths,
  TRIGGER_PATHS,
  uploadNameFromPreprocessed,
  uploadNameFromRecord,
} from '../../../src/storage/layout';

const NAMES = [
  'digit.png',
  'batch 7/scan one.dcm',
  'Zürich/Bäckerei/ß.png',
  '患者/画像 1.jpg',
  'a/b/c/d.tiff',
  'x.npy',
  'y.json',
];

describe('storage layout', () => {
  it.each(NAMES)('derived records of %s map back to the upload name', (name) => {
    expect(uploadNameFromPreprocessed(paths.preprocessed(name))).toBe(name);
    expect(uploadNameFromRecord(paths.prediction(name))).toBe(name);
    expect(uploadNameFromRecord(paths.rejected(name))).toBe(name);
    expect(matchTriggerPath(TRIGGER_PATHS.preprocess, CONTAINERS.uploads, name)).toEqual({ name });
    expect(matchTriggerPath(TRIGGER_PATHS.infer, CONTAINERS.preprocessed, paths.preprocessed(name))).toEqual({ name });
    expect(invalidUploadName(name)).toBeUndefined();
  });

  it('does not fire the infer trigger for the metadata sidecar or other containers', () => {
    expect(
      matchTriggerPath(TRIGGER_PATHS.infer, CONTAINERS.preprocessed, paths.legacyPreprocessedMeta('a.png')),
    ).toBeUndefined();
    expect(matchTriggerPath(TRIGGER_PATHS.infer, CONTAINERS.uploads, 'a.png.npy')).toBeUndefined();
    expect(matchTriggerPath(TRIGGER_PATHS.preprocess, CONTAINERS.rejected, 'a.png')).toBeUndefined();
  });

  it('treats regex characters in patterns literally', () => {
    expect(matchTriggerPath('c/{name}.n(p)y', 'c', 'a.n(p)y')).toEqual({ name: 'a' });
    expect(matchTriggerPath('c/{name}.n(p)y', 'c', 'a.npy')).toBeUndefined();
  });

  it.each([
    ['', 'empty'],
    ['a/../b.png', '".."'],
    ['a//b.png', 'empty'],
    ['tab\there.png', 'control'],
    ['x'.repeat(1020), 'longer'],
    ['trailing.', 'ends with'],
  ])('refuses the upload name %j', (name, why) => {
    expect(invalidUploadName(name)).toContain(why);
  });

  it("accepts upload names up to the length whose records still fit Azure's 1,024 characters", () => {
    const longest = 'x'.repeat(MAX_BLOB_NAME - '.json'.length);
    expect(invalidUploadName(longest)).toBeUndefined();
    for (const p of [
      paths.preprocessed(longest),
      paths.prediction(longest),
      paths.flagged(longest),
      paths.rejected(longest),
      paths.label(longest),
    ])
      expect(p.length).toBeLessThanOrEqual(MAX_BLOB_NAME);
    expect(invalidUploadName(`${longest}x`)).toContain('longer than 1019');
  });

  it.each(
    [
      '../models/current',
      'a/../../models/current',
      './x',
      '/etc/passwd',
      'a\\..\\b',
      'nul\u0000',
      'x'.repeat(1025),
    ].map((n) => [n.length > 40 ? `${n.length} characters` : JSON.stringify(n), n]),
  )('refuses to build a path from %s (it could leave its container or is no blob name)', (_label, name) => {
    for (const build of [
      paths.preprocessed,
      paths.prediction,
      paths.flagged,
      paths.label,
      paths.upload,
      paths.modelCard,
      paths.runStatus,
    ]) {
      expect(() => build(name)).toThrow(InvalidNameError);
    }
  });

  it('gives a name that cannot carry a record of its own a rejection record under the reserved folder', () => {
    for (const name of ['x'.repeat(1020), 'x'.repeat(1024), '../models/current', `${INVALID_NAMES_FOLDER}abc`]) {
      const p = paths.rejected(name);
      expect(p).toMatch(new RegExp(`^${INVALID_NAMES_FOLDER}[0-9a-f]{64}\\.json$`));
      expect(paths.rejected(name)).toBe(p); // the same every time: a retry finds its own record
    }
    expect(paths.rejected('x'.repeat(1020))).not.toBe(paths.rejected('x'.repeat(1021)));
    expect(invalidUploadName(`${INVALID_NAMES_FOLDER}abc`)).toContain('reserved');
  });

  it('keeps poison records of overlong names inside their folder', () => {
    const p = paths.poison('preprocess', 'uploads', 'x'.repeat(1024));
    expect(p.length).toBeLessThanOrEqual(MAX_BLOB_NAME);
    expect(p.startsWith('triage-local-poison/preprocess/uploads/')).toBe(true);
  });
});
