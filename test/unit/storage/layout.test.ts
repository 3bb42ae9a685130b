import { CONTAINERS, invalidUploadName, matchTriggerPath, paths, TRIGGER_PATHS, uploadNameFromPreprocessed, uploadNameFromRecord } from '../../../src/storage/layout';

const NAMES = ['digit.png', 'batch 7/scan one.dcm', 'Zürich/Bäckerei/ß.png', '患者/画像 1.jpg', 'a/b/c/d.tiff', 'x.npy', 'y.json'];

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
    expect(matchTriggerPath(TRIGGER_PATHS.infer, CONTAINERS.preprocessed, paths.legacyPreprocessedMeta('a.png'))).toBeUndefined();
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
});
