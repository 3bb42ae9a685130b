import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeIdx, parseIdx, readIdx, IdxFormatError } from '../../../src/ml/data/idx';

describe('IDX reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idx-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const images = new Uint8Array([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]);
  const file = encodeIdx([2, 2, 3], images);

  it('reads a plain ubyte file: shape and values', async () => {
    const p = join(dir, 'plain-idx3-ubyte');
    writeFileSync(p, file);
    const a = await readIdx(p);
    expect(a.shape).toEqual([2, 2, 3]);
    expect(a.type).toBe(0x08);
    expect(Array.from(a.data)).toEqual(Array.from(images));
  });

  it('reads a gzipped file the same way (detected by magic bytes)', async () => {
    const p = join(dir, 'zipped-idx3-ubyte.gz');
    writeFileSync(p, gzipSync(file));
    const a = await readIdx(p);
    expect(a.shape).toEqual([2, 2, 3]);
    expect(Array.from(a.data)).toEqual(Array.from(images));
  });

  it('reads big-endian int32 values', () => {
    const buf = Buffer.alloc(4 + 4 + 8);
    buf[2] = 0x0c;
    buf[3] = 1;
    buf.writeUInt32BE(2, 4);
    buf.writeInt32BE(-7, 8);
    buf.writeInt32BE(70000, 12);
    expect(Array.from(parseIdx(buf).data)).toEqual([-7, 70000]);
  });

  it('rejects truncated data, naming the source', () => {
    expect(() => parseIdx(file.subarray(0, file.length - 1), 'x.idx')).toThrow(IdxFormatError);
    expect(() => parseIdx(file.subarray(0, file.length - 1), 'x.idx')).toThrow(/x\.idx.*declares 2x2x3/);
    expect(() => parseIdx(Buffer.from([1, 2, 8, 1]), 'y')).toThrow(/magic/);
  });

  const fashion = '/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz';
  (existsSync(fashion) ? it : it.skip)('reads the Debian Fashion-MNIST test labels', async () => {
    const a = await readIdx(fashion);
    expect(a.shape).toEqual([10000]);
    expect(Math.max(...a.data)).toBe(9);
  });
});
