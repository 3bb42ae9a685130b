/** Permanent bad-input failures of the imaging library. Anything else thrown by it is a bug or transient. */

export type RejectionCode =
  | 'empty'
  | 'truncated'
  | 'not-an-image'
  | 'unsupported-format'
  | 'too-large'
  | 'too-many-pixels'
  | 'dicom-no-pixel-data'
  | 'dicom-unsupported-transfer-syntax'
  | 'dicom-malformed'
  | 'decode-failed';

/** Thrown for every permanent bad-input case: record it and do not retry. */
export class ImageRejection extends Error {
  constructor(
    readonly code: RejectionCode,
    message: string,
    readonly detail?: Record<string, string | number>,
  ) {
    super(message);
    this.name = 'ImageRejection';
  }
}

/** Message of anything thrown, including the bare numbers Emscripten modules throw. */
export function describeThrown(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'number') return `native exception ${e}`;
  return String(e);
}
