/** Captures what a CLI command prints (console.log and console.error lines; stderr writes are dropped) until `restore`. */
export function capture(): { out: string[]; err: string[]; restore: () => void } {
  const out: string[] = [];
  const err: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  return {
    out,
    err,
    restore: () => {
      log.mockRestore();
      error.mockRestore();
      stderr.mockRestore();
    },
  };
}
