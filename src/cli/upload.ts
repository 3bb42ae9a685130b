/** Uploading files and folders into uploads/, with bounded parallelism and progress. */
import { createReadStream, statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS } from '../storage/layout';
import { UsageError } from './common';

export interface UploadItem {
  file: string;
  name: string;
  bytes: number;
}

const CONTENT_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.gif': 'image/gif',
  '.dcm': 'application/dicom',
};

/** Files under `target` (a file or a folder, recursively) with the blob names they get. */
export function planUpload(target: string, prefix = ''): UploadItem[] {
  let st;
  try {
    st = statSync(target);
  } catch {
    throw new UsageError(`No such file or folder: ${target}`);
  }
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  if (prefix.startsWith('/')) throw new UsageError(`--prefix must not start with "/": ${prefix}`);
  if (st.isFile()) return [{ file: target, name: prefix + path.basename(target), bytes: st.size }];
  if (!st.isDirectory()) throw new UsageError(`Not a file or folder: ${target}`);
  const out: UploadItem[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.isFile() && !e.name.startsWith('.')) {
        const rel = path.relative(target, full).split(path.sep).join('/');
        out.push({ file: full, name: prefix + rel, bytes: statSync(full).size });
      }
    }
  };
  walk(target);
  if (out.length === 0) throw new UsageError(`The folder ${target} holds no files.`);
  return out;
}

export interface UploadProgress {
  done: number;
  failed: number;
  bytes: number;
}

export interface UploadReport {
  uploaded: number;
  failed: { name: string; error: string }[];
  bytes: number;
  seconds: number;
}

export async function uploadAll(
  store: BlobStore,
  items: UploadItem[],
  opts: { concurrency?: number; onProgress?: (p: UploadProgress) => void } = {},
): Promise<UploadReport> {
  const started = Date.now();
  const progress: UploadProgress = { done: 0, failed: 0, bytes: 0 };
  const failed: UploadReport['failed'] = [];
  const container = store.container(CONTAINERS.uploads);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const item = items[next++];
      if (item === undefined) return;
      try {
        const client = container.getBlockBlobClient(item.name);
        await client.uploadStream(createReadStream(item.file), 4 * 1024 * 1024, 4, {
          blobHTTPHeaders: {
            blobContentType: CONTENT_TYPES[path.extname(item.file).toLowerCase()] ?? 'application/octet-stream',
          },
        });
        progress.done++;
        progress.bytes += item.bytes;
      } catch (err) {
        progress.failed++;
        failed.push({ name: item.name, error: err instanceof Error ? err.message : String(err) });
      }
      opts.onProgress?.({ ...progress });
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, items.length) }, worker));
  return { uploaded: progress.done, failed, bytes: progress.bytes, seconds: (Date.now() - started) / 1000 };
}
