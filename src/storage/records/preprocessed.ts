/**
 * The preprocessing record: what preprocess learned about an upload (source hash, format and
 * size, profile, quality signals, DICOM attributes). It travels as the blob metadata `record` of
 * preprocessed/{name}.npy, beside small keys that let infer score without reading it.
 */
import type { BlobStore } from '../blobStore';
import type { ImageMetadata } from '../../imaging';
import { CONTAINERS, paths } from '../layout';
import { TransientError } from '../../util/errors';
import { SOURCE_SHA_KEY } from './write';

export interface SourceInfo {
  sha256: string;
  bytes: number;
}

export interface PreprocessedRecord {
  upload: string;
  source: SourceInfo & ImageMetadata['source'];
  profile: ImageMetadata['profile'];
  shape: ImageMetadata['shape'];
  dicom?: ImageMetadata['dicom'];
  quality: ImageMetadata['quality'];
  pixels: string;
  time: string;
  instance: string;
}

/** The record as stored: the upload name and pixel path are the blob's own name. */
export type StoredPreprocessedRecord = Omit<PreprocessedRecord, 'upload' | 'pixels'>;

/** Blob metadata key of preprocessed/{name}.npy holding the record as JSON. */
export const RECORD_KEY = 'record';

/** JSON with every character outside printable ASCII escaped: blob metadata values are HTTP header values. */
export function asciiJson(value: unknown): string {
  // Spaces too: header canonicalisation may fold runs of them.
  return JSON.stringify(value).replace(/[^\x21-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The preprocessing record of an upload, from preprocessed/{name}.npy's metadata (one HEAD), or
 * from the preprocessed/{name}.json that versions before 2026-11-29 wrote beside the pixels.
 * Undefined when the upload has no preprocessed image; throws when the image has no record.
 */
export async function readPreprocessedRecord(store: BlobStore, name: string): Promise<PreprocessedRecord | undefined> {
  const pixels = `${CONTAINERS.preprocessed}/${paths.preprocessed(name)}`;
  const head = await store.head(CONTAINERS.preprocessed, paths.preprocessed(name));
  if (head === undefined) return undefined;
  const stored = head.metadata[RECORD_KEY];
  if (stored !== undefined) return { upload: name, ...(JSON.parse(stored) as StoredPreprocessedRecord), pixels };
  const legacy = await store.getJson<PreprocessedRecord>(CONTAINERS.preprocessed, paths.legacyPreprocessedMeta(name));
  if (legacy === undefined)
    throw new TransientError(
      `${pixels} has no preprocessing record (metadata "${RECORD_KEY}" or ${paths.legacyPreprocessedMeta(name)})`,
    );
  return legacy.value;
}

/** Blob metadata of preprocessed/{name}.npy (ASCII header values). */
export function npyMetadata(meta: ImageMetadata): Record<string, string> {
  const flags = [
    ...(meta.quality.blank ? ['blank'] : []),
    ...(meta.quality.nearConstant ? ['near-constant'] : []),
    ...meta.quality.warnings,
  ];
  // Never empty: the service drops metadata with empty values.
  return {
    profile: meta.profile.name,
    profileversion: meta.profile.version,
    qualityflags: flags.length === 0 ? 'none' : [...new Set(flags)].join(','),
  };
}

/** What scoring needs from preprocessing, read back from the .npy blob's metadata (undefined if incomplete). */
export function scoringInfoFromMetadata(md: Record<string, string> | undefined):
  | {
      sha256: string;
      profile: { name: string; version: string };
      quality: { blank: boolean; nearConstant: boolean; warnings: string[] };
    }
  | undefined {
  if (md === undefined) return undefined;
  const sha = md[SOURCE_SHA_KEY];
  const { profile, profileversion, qualityflags } = md;
  if (sha === undefined || profile === undefined || profileversion === undefined || qualityflags === undefined)
    return undefined;
  const flags = qualityflags.split(',').filter((f) => f !== '' && f !== 'none');
  return {
    sha256: sha,
    profile: { name: profile, version: profileversion },
    quality: { blank: flags.includes('blank'), nearConstant: flags.includes('near-constant'), warnings: flags },
  };
}
