/** A request with a body sends it as JSON (the JSON routes refuse other content types with 415). */
export function asJson(init?: RequestInit): RequestInit | undefined {
  if (init?.body === undefined) return init;
  return {
    ...init,
    headers: { 'content-type': 'application/json', ...((init.headers ?? {}) as Record<string, string>) },
  };
}
