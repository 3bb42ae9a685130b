/** Glue between the Functions programming model and the pure handlers. */
import type { InvocationContext } from '@azure/functions';
import type { Log } from '../util/log';

export function contextLog(context: InvocationContext): Log {
  return {
    info: (m, ...r) => context.log(m, ...r),
    warn: (m, ...r) => context.warn(m, ...r),
    error: (m, ...r) => context.error(m, ...r),
  };
}

/** The `{name}` a blob trigger path bound, e.g. `batch 1/scan.dcm` for `uploads/{name}`. */
export function boundName(context: InvocationContext): string {
  const name = context.triggerMetadata?.name;
  if (typeof name !== 'string' || name === '') {
    throw new Error(
      `${context.functionName}: the trigger bound no {name} (trigger metadata: ${JSON.stringify(context.triggerMetadata ?? {})})`,
    );
  }
  return name;
}

export function asBuffer(input: unknown): Buffer {
  if (Buffer.isBuffer(input)) return input;
  if (input instanceof Uint8Array) return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (typeof input === 'string') return Buffer.from(input, 'utf8');
  if (input === null || input === undefined) return Buffer.alloc(0);
  throw new Error(`blob trigger delivered ${typeof input}, expected bytes`);
}

/** The triggering blob's metadata (the host binds it as `metadata`), as strings. */
export function blobMetadata(context: InvocationContext): Record<string, string> | undefined {
  const md = context.triggerMetadata?.metadata;
  if (typeof md !== 'object' || md === null) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md as Record<string, unknown>))
    if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
}

/**
 * The triggering blob's size as its properties declare it (the host binds the blob's properties
 * as `properties`, keys camel-cased: `contentLength`); undefined when absent.
 */
export function declaredBlobSize(context: InvocationContext): number | undefined {
  const props = context.triggerMetadata?.properties;
  if (typeof props !== 'object' || props === null) return undefined;
  const n = (props as Record<string, unknown>).contentLength;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** The triggering blob's ETag as its properties give it (`eTag`); undefined when absent. */
export function blobEtag(context: InvocationContext): string | undefined {
  const props = context.triggerMetadata?.properties;
  if (typeof props !== 'object' || props === null) return undefined;
  const e = (props as Record<string, unknown>).eTag ?? (props as Record<string, unknown>).etag;
  return typeof e === 'string' && e !== '' ? e : undefined;
}
