/**
 * preprocess: one upload in, exactly one terminal record out.
 *   good image  -> preprocessed/{name}.npy: the pixels, with the preprocessing record (source hash,
 *                  format and size, profile, quality signals, DICOM tags) as its blob metadata
 *   bad input   -> rejected/{name}.json with a machine-readable code and a human message
 * Bad input is permanent: the handler records it and returns (a throw would be retried five
 * times and end in the poison queue). Storage errors are transient: they propagate so the host
 * retries. The upload itself is never modified.
 */
import type { Deps } from '../composition';
import { ImageRejection, preprocessImage, encodeNpy, ImageMetadata, sizeRejection } from '../imaging';
import { sha256 } from '../storage/blobStore';
import { CONTAINERS, invalidUploadName, paths } from '../storage/layout';
import {
  asciiJson,
  npyMetadata,
  RECORD_KEY,
  SourceInfo,
  StoredPreprocessedRecord,
} from '../storage/records/preprocessed';
import type { RejectionRecord, RejectionRecordCode } from '../storage/records/rejection';
import { recordSource, removeStaleRecord, writeJsonRecord, writeRecord, WriteOutcome } from '../storage/records/write';
import type { Log } from '../util/log';
import { ClaimedElsewhere, runClaimed } from '../storage/claims';

export interface PreprocessInput {
  /** Upload name (the `{name}` of uploads/{name}); may contain virtual folders. */
  name: string;
  /** The upload's bytes, as the trigger delivered them. */
  data: Buffer;
  /**
   * The size the blob's properties declare (the trigger metadata's `properties.contentLength`),
   * when known. The size limit is checked on it (and on the bytes) before any decoding starts.
   */
  declaredBytes?: number;
}

export type PreprocessResult =
  | { status: 'preprocessed'; outcome: WriteOutcome; sha256: string }
  | { status: 'rejected'; outcome: WriteOutcome; code: RejectionRecordCode; sha256: string }
  | { status: 'already-done'; sha256: string };

type Decoded = { ok: true; out: Awaited<ReturnType<typeof preprocessImage>> } | { ok: false; err: unknown };

export async function handlePreprocess(input: PreprocessInput, deps: Deps, log: Log): Promise<PreprocessResult> {
  const { store, config } = deps;
  const sha = sha256(input.data);
  const source: SourceInfo = { sha256: sha, bytes: input.data.length };

  // A rejection of these very bytes means a re-delivery: nothing to do. (A re-delivery of a good
  // image is caught by the conditional writes below, which find the same source hash.)
  const rejectedPromise = recordSource(store, CONTAINERS.rejected, paths.rejected(input.name));
  const badName = invalidUploadName(input.name);
  // The larger of the declared and the delivered size: neither may pass the limit.
  const tooLarge = sizeRejection(Math.max(input.declaredBytes ?? 0, input.data.length), config.maxUploadBytes);
  // Refused before decoding (a bad name, too many bytes), or being decoded while the lookup runs.
  const work:
    | { refused: { code: RejectionRecordCode; message: string; detail?: Record<string, string | number> } }
    | { decoding: Promise<Decoded> } =
    badName !== undefined
      ? { refused: { code: 'invalid-name', message: `The upload name cannot be used: ${badName}.` } }
      : tooLarge !== undefined
        ? {
            refused: {
              code: tooLarge.code,
              message: tooLarge.message,
              ...(tooLarge.detail !== undefined ? { detail: tooLarge.detail } : {}),
            },
          }
        : {
            decoding: preprocessImage(input.data, {
              profile: config.profile,
              xraySize: config.xraySize,
              maxInputBytes: config.maxUploadBytes,
              maxPixels: config.maxPixels,
            }).then(
              (out) => ({ ok: true as const, out }),
              (err: unknown) => ({ ok: false as const, err }),
            ),
          };
  const rejected = await rejectedPromise;
  if (rejected?.sha === sha) {
    log.info(`preprocess: ${input.name} already rejected for sha256 ${sha.slice(0, 12)}`);
    return { status: 'already-done', sha256: sha };
  }
  if ('refused' in work)
    return reject(input.name, source, work.refused.code, work.refused.message, work.refused.detail, deps, log);
  const result = await work.decoding;
  if (!result.ok) {
    if (result.err instanceof ImageRejection)
      return reject(input.name, source, result.err.code, result.err.message, result.err.detail, deps, log);
    throw result.err;
  }
  const pixels: Float32Array = result.out.pixels;
  const meta: ImageMetadata = result.out.metadata;

  const record: StoredPreprocessedRecord = {
    source: { ...source, ...meta.source },
    profile: meta.profile,
    shape: meta.shape,
    ...(meta.dicom !== undefined ? { dicom: meta.dicom } : {}),
    quality: meta.quality,
    time: deps.now().toISOString(),
    instance: deps.instanceId,
  };
  // One write: pixels and record together (blob metadata), so neither exists without the other.
  const outcome = await writeRecord(store, {
    container: CONTAINERS.preprocessed,
    blob: paths.preprocessed(input.name),
    body: encodeNpy(pixels, meta.shape),
    sourceSha256: sha,
    contentType: 'application/octet-stream',
    metadata: { ...npyMetadata(meta), [RECORD_KEY]: asciiJson(record) },
  });
  // A changed re-upload that used to be rejected is not rejected any more.
  if (rejected !== undefined) await removeStaleRecord(store, CONTAINERS.rejected, paths.rejected(input.name), sha);
  log.info(
    `preprocess: ${input.name} -> preprocessed (${meta.source.format} ${meta.source.width}x${meta.source.height}, ${outcome})`,
  );
  return { status: 'preprocessed', outcome, sha256: sha };
}

/**
 * handlePreprocess under a claim on the upload's version (src/storage/claims.ts): whoever is told
 * about it (the trigger on any instance, the sweep), it is processed once per account. Without an
 * ETag (the trigger gave none) it simply runs.
 */
export async function preprocessOnce(
  input: PreprocessInput,
  etag: string | undefined,
  deps: Deps,
  log: Log,
  claimTimeoutMs?: number,
): Promise<PreprocessResult | ClaimedElsewhere> {
  const target = { fn: 'preprocess', container: CONTAINERS.uploads, name: input.name, etag, upload: input.name };
  return runClaimed(
    target,
    deps,
    log,
    async () => {
      // Claims are removed once the work is done: a delivery that claims after that finds the record.
      if (etag !== undefined && (await preprocessedAlready(input, deps))) {
        log.info(`preprocess skipped: ${input.name} (${etag}) is preprocessed already`);
        return { status: 'already-done' as const, sha256: sha256(input.data) };
      }
      return handlePreprocess(input, deps, log);
    },
    claimTimeoutMs,
  );
}

/** Whether these very bytes have their preprocessed image, and no rejection (of older bytes) is left to remove. */
async function preprocessedAlready(input: PreprocessInput, deps: Deps): Promise<boolean> {
  if (invalidUploadName(input.name) !== undefined) return false;
  const [done, rejected] = await Promise.all([
    recordSource(deps.store, CONTAINERS.preprocessed, paths.preprocessed(input.name)),
    recordSource(deps.store, CONTAINERS.rejected, paths.rejected(input.name)),
  ]);
  return rejected === undefined && done !== undefined && done.sha === sha256(input.data);
}

async function reject(
  name: string,
  source: SourceInfo,
  code: RejectionRecordCode,
  message: string,
  detail: Record<string, string | number> | undefined,
  deps: Deps,
  log: Log,
): Promise<PreprocessResult> {
  const { store } = deps;
  const record: RejectionRecord = {
    upload: name,
    code,
    message,
    ...(detail !== undefined ? { detail } : {}),
    source,
    profile: deps.config.profile,
    time: deps.now().toISOString(),
    instance: deps.instanceId,
  };
  // The code travels as blob metadata too, so status can count rejections from a listing.
  const outcome = await writeJsonRecord(store, CONTAINERS.rejected, paths.rejected(name), record, source.sha256, {
    code,
  });
  // A changed re-upload that is now bad supersedes what the older bytes produced. (A name that
  // cannot be used never had other records: names do not change, and they may not fit a path.)
  if (code !== 'invalid-name' && (await store.head(CONTAINERS.preprocessed, paths.preprocessed(name))) !== undefined) {
    await removeStaleRecord(store, CONTAINERS.preprocessed, paths.preprocessed(name), source.sha256);
    await removeStaleRecord(store, CONTAINERS.preprocessed, paths.legacyPreprocessedMeta(name), source.sha256);
    await removeStaleRecord(store, CONTAINERS.predictions, paths.prediction(name), source.sha256);
    await removeStaleRecord(store, CONTAINERS.flagged, paths.flagged(name), source.sha256);
  }
  log.warn(`preprocess: ${name} rejected (${code}): ${message}`);
  return { status: 'rejected', outcome, code, sha256: source.sha256 };
}
