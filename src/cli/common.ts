/** What every `triage` command shares: the one usage error (exit code 2) and who is at the keyboard. */
import os from 'node:os';
import type { Deps } from '../composition';
import type { BlobStore } from '../storage/blobStore';

/** A command line that cannot be carried out as given: `triage: <message>` and exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The user name (labels, promotions and runs record who asked), else "cli". */
export function whoami(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'cli';
  }
}

/** What a command gets: the dependencies and the store, built on first use (`--help` builds nothing). */
export interface CommandContext {
  getDeps: () => Deps;
  getStore: () => BlobStore;
}
