/**
 * The error family every layer shares. A TransientError is worth retrying (storage changed under
 * concurrent writers, a record is missing for now): handlers throw it for the host to retry.
 * Bad input is never transient: it gets a rejection record instead.
 */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}
