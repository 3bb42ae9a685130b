/** Helpers shared by the folder and blob loaders: bounded parallelism and a stable name-hash split. */
import { createHash } from 'node:crypto';
import { LabeledImages, TrainTestSplit, subset } from './dataset';

export { mapLimit } from '../../util/mapLimit';

/**
 * True when `name` belongs to the test part: the first 32 bits of sha256(name) as a fraction of
 * 2^32 fall below `fraction`. An image keeps its side as the data grows, so test data never leaks
 * into a later training run.
 */
export function isTestName(name: string, fraction: number): boolean {
  return createHash('sha256').update(name).digest().readUInt32BE(0) / 2 ** 32 < fraction;
}

/** Splits named images into train and test with isTestName: by group key (patient) when the images have them, else by name. */
export function splitByName(d: LabeledImages, testFraction: number): TrainTestSplit {
  const keys = d.groups ?? d.names;
  if (keys === undefined) throw new Error(`${d.source}: images have no names to split by`);
  const train: number[] = [];
  const test: number[] = [];
  keys.forEach((n, i) => (testFraction > 0 && isTestName(n, testFraction) ? test : train).push(i));
  return { train: subset(d, train, `${d.source}:train`), test: subset(d, test, `${d.source}:test`) };
}
