// @ts-check
'use strict';
/**
 * Preloaded into the Azurite child process (`node -r <this file> ...`) by startAzurite, which
 * starts the child with an IPC channel. The channel closes when the parent process ends, however
 * it ends (SIGKILL included): Azurite then shuts down the way it does on SIGTERM (it closes its
 * metadata store, which saves it) instead of living on, re-parented, on files a next start would
 * open a second time. Plain JavaScript because the child runs it as it is.
 */
const FORCE_EXIT_MS = 30_000;

if (typeof process.send === 'function') {
  process.once('disconnect', () => {
    // Nobody reads this process's output any more: a write must not end it before it has saved.
    for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
    setTimeout(() => process.exit(0), FORCE_EXIT_MS).unref();
    // Azurite's own graceful shutdown (a no-op if a SIGTERM already started it).
    process.emit('SIGTERM', 'SIGTERM');
  });
}
