/**
 * Glue for HTTP functions: JSON bodies in (size-limited, content type checked), names from routes
 * checked, Result out, reviewer identity from the platform, and the answer any thrown error gets.
 */
import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { isUnreachable } from '../storage/blobStore';
import { checkUploadName, InvalidNameError } from '../storage/layout';

/** A handler's answer with an HTTP status: the review handlers return it, and the CLI prints it. */
export type Result<T> =
  { status: 200 | 201; body: T } | { status: 400 | 404 | 409 | 422; body: { error: string; [k: string]: unknown } };

/** Default body limit of a JSON route (labels, retrain): a label with a 2,000-character note is ~2.5 KiB. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;

export type BodyResult<T> = { ok: true; value: T } | { ok: false; status: 400 | 413 | 415; error: string };

export interface BodyOptions {
  /** Bytes the body may have; more is refused with 413. Default MAX_JSON_BODY_BYTES. */
  maxBytes?: number;
  /** An empty body is fine (the value is then undefined). Default false: 400. */
  emptyOk?: boolean;
}

/** application/json or any `+json` type, with or without parameters (charset). */
export function isJsonContentType(contentType: string | null): boolean {
  if (contentType === null) return false;
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type);
}

/**
 * The request's JSON body. Refuses, before reading, a declared length over the limit (413) and a
 * body that does not say it is JSON (415: `text/plain` is what a cross-site form or a bare fetch
 * sends); then an actual body over the limit (413), and invalid JSON (400).
 */
export async function jsonBody(req: HttpRequest, opts: BodyOptions = {}): Promise<BodyResult<unknown>> {
  const max = opts.maxBytes ?? MAX_JSON_BODY_BYTES;
  const declared = Number(req.headers.get('content-length') ?? '0');
  if (Number.isFinite(declared) && declared > max)
    return { ok: false, status: 413, error: `The body has ${declared} bytes; this route accepts at most ${max}.` };
  const bytes = Buffer.from(await req.arrayBuffer());
  if (bytes.length > max)
    return { ok: false, status: 413, error: `The body has more than ${max} bytes; this route accepts at most ${max}.` };
  const text = bytes.toString('utf8');
  if (text.trim() === '') {
    return opts.emptyOk === true
      ? { ok: true, value: undefined }
      : { ok: false, status: 400, error: 'The request has no body; send JSON such as {"class": "7"}.' };
  }
  if (!isJsonContentType(req.headers.get('content-type'))) {
    return {
      ok: false,
      status: 415,
      error: `The body must be sent as application/json (got ${JSON.stringify(req.headers.get('content-type') ?? 'no content type')}).`,
    };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return {
      ok: false,
      status: 400,
      error: `The body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

/** A refused body or name as the HTTP answer. */
export function refusal(r: { status: number; error: string }): HttpResponseInit {
  return { status: r.status, jsonBody: { error: r.error } };
}

/**
 * The upload name a route's `{*name}` (or another parameter) carries, checked with the upload-name
 * rule: a name that could address another container (`../models/current`), or that no upload can
 * have, is refused with 400 before any storage call.
 */
export function routeName(
  req: Pick<HttpRequest, 'params'>,
  param = 'name',
): { ok: true; name: string } | { ok: false; status: 400; error: string } {
  try {
    return { ok: true, name: checkUploadName(req.params[param] ?? '') };
  } catch (err) {
    if (err instanceof InvalidNameError) return { ok: false, status: 400, error: `Not an image name: ${err.reason}.` };
    throw err;
  }
}

/** The signed-in reviewer (App Service authentication sets this header), else "anonymous". */
export function reviewerOf(req: HttpRequest): string {
  return req.headers.get('x-ms-client-principal-name') ?? 'anonymous';
}

/** Any handler result with an HTTP status (the review handlers' Result, the retrain handlers'). */
export function toResponse<T>(r: Result<T> | { status: number; body: unknown }): HttpResponseInit {
  return { status: r.status, jsonBody: r.body };
}

/** Seconds a client should wait before retrying while storage is unreachable. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * The answer to an error an HTTP function threw: a name the layout refused is the client's (400),
 * unreachable storage is temporary (503 with Retry-After), anything else is ours (500, no detail).
 */
export function errorResponse(err: unknown): {
  status: number;
  headers: Record<string, string>;
  body: { error: string };
} {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (err instanceof InvalidNameError)
    return { status: 400, headers, body: { error: `Not an image name: ${err.reason}.` } };
  if (isUnreachable(err))
    return {
      status: 503,
      headers: { ...headers, 'retry-after': String(RETRY_AFTER_SECONDS) },
      body: { error: 'Storage is unreachable; try again shortly.' },
    };
  return { status: 500, headers, body: { error: 'internal error' } };
}
