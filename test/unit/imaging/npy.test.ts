import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeNpy, encodeNpy } from '../../../src/imaging';

describe('npy', () => {
  it.each([[[28, 28, 1]], [[5]], [[2, 3]], [[]], [[0, 4]]])('round-trips shape %j', (shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => i / 7 - 1);
    const buf = encodeNpy(data, shape);
    const back = decodeNpy(buf);
    expect(back.shape).toEqual(shape);
    expect(back.data).toEqual(data);
  });

  it('writes a valid v1.0 header: magic, version, 64-byte aligned, newline-terminated dict', () => {
    const buf = encodeNpy(new Float32Array(784), [28, 28, 1]);
    expect(buf.subarray(0, 8)).toEqual(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]));
    const hlen = buf.readUInt16LE(8);
    expect((10 + hlen) % 64).toBe(0);
    const header = buf.toString('latin1', 10, 10 + hlen);
    expect(header.endsWith('\n')).toBe(true);
    expect(header.trim()).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (28, 28, 1), }");
    expect(buf.length).toBe(10 + hlen + 784 * 4);
  });

  it('rejects a shape that does not match the data', () => {
    expect(() => encodeNpy(new Float32Array(3), [2, 2])).toThrow(/holds 4 values/);
    expect(() => encodeNpy(new Float32Array(0), [-1])).toThrow(/invalid dimension/);
  });

  it('throws on malformed files', () => {
    const good = encodeNpy(new Float32Array([1, 2, 3, 4]), [2, 2]);
    expect(() => decodeNpy(Buffer.from('not numpy'))).toThrow(/magic/);
    expect(() => decodeNpy(good.subarray(0, good.length - 1))).toThrow(/data bytes/);
    expect(() => decodeNpy(good.subarray(0, 20))).toThrow(/truncated/);
    const f8 = Buffer.from(good.toString('latin1').replace("'<f4'", "'<f8'"), 'latin1');
    expect(() => decodeNpy(f8)).toThrow(/dtype/);
    const fortran = Buffer.from(good.toString('latin1').replace('False', 'True '), 'latin1');
    expect(() => decodeNpy(fortran)).toThrow(/Fortran/);
    const v9 = Buffer.from(good);
    v9[6] = 9;
    expect(() => decodeNpy(v9)).toThrow(/version/);
  });

  const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
  (hasNumpy ? it : it.skip)('is read and written by numpy (python3 + numpy available)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'npy-'));
    try {
      const data = Float32Array.from({ length: 28 * 28 }, (_, i) => (i % 28) / 27);
      writeFileSync(join(dir, 'a.npy'), encodeNpy(data, [28, 28, 1]));
      const py = [
        'import numpy as np, sys',
        `a = np.load(sys.argv[1] + "/a.npy")`,
        'assert a.dtype == np.float32 and a.shape == (28, 28, 1), (a.dtype, a.shape)',
        'assert abs(float(a[3, 27, 0]) - 1.0) < 1e-6 and abs(float(a[5, 0, 0])) < 1e-6',
        'np.save(sys.argv[1] + "/b.npy", (a * 2).astype("<f4"))',
      ].join('\n');
      const r = spawnSync('python3', ['-c', py, dir], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const back = decodeNpy(readFileSync(join(dir, 'b.npy')));
      expect(back.shape).toEqual([28, 28, 1]);
      expect(back.data[27]).toBeCloseTo(2, 6);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
