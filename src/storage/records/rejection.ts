/** The rejection record: why an upload could not be used (rejected/{name}.json). */
import type { RejectionCode } from '../../imaging';
import type { SourceInfo } from './preprocessed';

export type RejectionRecordCode = RejectionCode | 'invalid-name';

export interface RejectionRecord {
  upload: string;
  code: RejectionRecordCode;
  message: string;
  detail?: Record<string, string | number>;
  source: SourceInfo;
  profile: string;
  time: string;
  instance: string;
}
