/**
 * The Azurite internals @image-triage/local-functions-host's preload patches are those of exact
 * versions: azurite itself (pinned by the package and here) and the lokijs and uri-templates it
 * installs, which only the repository's root can pin (npm `overrides`).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface Pkg {
  version: string;
  dependencies: Record<string, string>;
  overrides?: Record<string, string>;
}

const ROOT = path.resolve(__dirname, '..', '..', '..');
const read = (file: string): Pkg => JSON.parse(readFileSync(file, 'utf8')) as Pkg;
/** The installed version of `name`, as resolved from `from`. */
const installed = (name: string, from = ROOT): string =>
  read(require.resolve(`${name}/package.json`, { paths: [from] })).version;

describe('Azurite pins', () => {
  it('pins azurite exactly, here and in the package, and its lokijs and uri-templates to what it installs', () => {
    const azuriteDir = path.dirname(require.resolve('azurite/package.json', { paths: [ROOT] }));
    expect(read(path.join(ROOT, 'package.json')).dependencies.azurite).toBe(installed('azurite'));
    expect(read(path.join(ROOT, 'packages', 'local-functions-host', 'package.json')).dependencies.azurite).toBe(
      installed('azurite'),
    );
    expect(read(path.join(ROOT, 'package.json')).overrides).toEqual({
      lokijs: installed('lokijs', azuriteDir),
      'uri-templates': installed('uri-templates', azuriteDir),
    });
  });
});
