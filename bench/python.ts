/** The Python interpreter that can import PyTorch, for the benches' PyTorch peers. */
import { spawnSync } from 'node:child_process';

/** `preferred` (--python or TRIAGE_PYTHON) alone if given, else python3 on the PATH, then Debian's. */
export function findPython(preferred: string | undefined): { python?: string; why?: string } {
  const candidates = preferred ? [preferred] : ['python3', '/usr/bin/python3'];
  const tried: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py };
    tried.push(`${py}: ${(r.error?.message ?? r.stderr.trim().split('\n').pop() ?? 'failed').slice(0, 120)}`);
  }
  return { why: `PyTorch not importable (${tried.join('; ')}); install python3-torch` };
}
