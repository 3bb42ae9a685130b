/**
 * The X-ray demo uploads exactly the images `triage train` held out (the folder loader's own
 * patient split), and its leak check finds a value wherever it sits.
 */
import { join } from 'node:path';
import { classFolders, heldOutFiles, valueFinder } from '../../../src/cli/demoXray';
import { DEFAULT_GROUP_PATTERN, loadImageFolder } from '../../../src/ml/data/folder';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'chest-xray');

/** The loader with a preprocessing that decodes nothing: only its split matters here. */
async function loaderTestSplit(testFraction: number, group: string): Promise<string[]> {
  const d = await loadImageFolder(FIXTURES, {
    testFraction,
    ...(group === 'none' ? {} : { groupPattern: group }),
    preprocess: async () => ({ pixels: new Float32Array(4), shape: [2, 2, 1] }),
  });
  return [...(d.test.names ?? [])].sort();
}

describe('heldOutFiles', () => {
  it('finds the class folders in the order training numbers them', () => {
    expect(classFolders(FIXTURES)).toEqual(['NORMAL', 'PNEUMONIA']);
  });

  it.each([
    [0.5, DEFAULT_GROUP_PATTERN],
    [0.3, DEFAULT_GROUP_PATTERN],
    [0.5, 'none'],
  ])('is the test split of triage train (test split %s, patient rule %s)', async (fraction, group) => {
    const held = await heldOutFiles(FIXTURES, fraction, group);
    const expected = await loaderTestSplit(fraction, group);
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan((await heldOutFiles(FIXTURES, 1, group)).length);
    expect(held.map((f) => f.name).sort()).toEqual(expected);
    for (const f of held) expect(f.name.startsWith(`${f.className}/`)).toBe(true);
  });

  it('holds out whole patients: no patient has images on both sides', async () => {
    const held = await heldOutFiles(FIXTURES, 0.5, DEFAULT_GROUP_PATTERN);
    const all = await heldOutFiles(FIXTURES, 1, DEFAULT_GROUP_PATTERN);
    expect(all.length).toBeGreaterThan(held.length);
    const heldPatients = new Set(held.map((f) => f.patient));
    const kept = all.filter((f) => !held.some((h) => h.name === f.name));
    expect(kept.length).toBeGreaterThan(0);
    for (const f of kept) expect(heldPatients.has(f.patient)).toBe(false);
    // The fixtures hold patients with several images, so this tests something.
    const perPatient = new Map<string, number>();
    for (const f of all) perPatient.set(f.patient, (perPatient.get(f.patient) ?? 0) + 1);
    expect([...perPatient.values()].filter((n) => n > 1).length).toBeGreaterThanOrEqual(2);
  });

  it('holds out nothing with a test split of 0', async () => {
    expect(await heldOutFiles(FIXTURES, 0, DEFAULT_GROUP_PATTERN)).toEqual([]);
  });
});

describe('valueFinder', () => {
  const find = valueFinder([
    'Okonkwo3F2A^Ada',
    'Okonkwo3F2A',
    'PID-0A1B2C3D4E',
    '20150412',
    'ACC',
    "Riverside Children's Hospital 9C1D",
  ]);

  it('finds a value at the start, in the middle and at the end of a text', () => {
    expect(find('PID-0A1B2C3D4E and more')).toBe('PID-0A1B2C3D4E');
    expect(find('{"note":"born 20150412 in"}')).toBe('20150412');
    expect(find('{"x":1,"who":"Riverside Children\'s Hospital 9C1D"}')).toBe("Riverside Children's Hospital 9C1D");
    expect(find('name Okonkwo3F2A^Ada')).toBe('Okonkwo3F2A^Ada');
    expect(find('family Okonkwo3F2A, given elsewhere')).toBe('Okonkwo3F2A');
  });

  it('finds values shorter than its lookup key, and nothing in a text without any', () => {
    expect(find('see ACC here')).toBe('ACC');
    expect(
      find('{"upload":"demo/PNEUMONIA/person1000.dcm","probabilities":{"NORMAL":0.2015041,"PNEUMONIA":0.79}}'),
    ).toBeUndefined();
    expect(find('PID-0A1B2C3D4')).toBeUndefined();
    expect(find('')).toBeUndefined();
  });
});
