/** The label record: a reviewer's label of an image, with the earlier ones (labels/{name}.json). */
import type { BlobStore } from '../blobStore';
import { CONTAINERS, paths } from '../layout';

export interface LabelEntry {
  class: string;
  labeledBy: string;
  labeledAt: string;
  note?: string;
}

export interface LabelRecord extends LabelEntry {
  upload: string;
  source: { sha256: string };
  /** What the model said when the reviewer labeled it, if it had been scored. */
  prediction?: { modelVersion: string; topClass: string; confidence: number };
  /** Earlier labels of this image, newest first. */
  history: LabelEntry[];
}

/** The current label record; 'unreadable' when the blob is not a label record (not JSON, or no object). */
export async function readLabelRecord(
  store: BlobStore,
  name: string,
): Promise<{ value: LabelRecord; etag: string } | undefined | 'unreadable'> {
  let r: { value: unknown; etag: string } | undefined;
  try {
    r = await store.getJson<unknown>(CONTAINERS.labels, paths.label(name));
  } catch (err) {
    if (err instanceof SyntaxError) return 'unreadable';
    throw err;
  }
  if (r === undefined) return undefined;
  const v = r.value as Partial<LabelRecord> | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    Array.isArray(v) ||
    typeof v.class !== 'string' ||
    (v.history !== undefined && !Array.isArray(v.history))
  )
    return 'unreadable';
  return { value: { ...(v as LabelRecord), history: v.history ?? [] }, etag: r.etag };
}
