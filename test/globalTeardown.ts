export default async function globalTeardown(): Promise<void> {
  const handles = (globalThis as { __TRIAGE_AZURITES__?: { stop(): Promise<void> }[] }).__TRIAGE_AZURITES__ ?? [];
  await Promise.all(handles.map((h) => h.stop()));
}
