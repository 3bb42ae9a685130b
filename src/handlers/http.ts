/** Glue for HTTP functions: JSON bodies in, Result out, reviewer identity from the platform. */
import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import type { Result } from './review';

export async function jsonBody(req: HttpRequest): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
  const text = await req.text();
  if (text.trim() === '') return { ok: false, error: 'The request has no body; send JSON such as {"class": "7"}.' };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: `The body is not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
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
