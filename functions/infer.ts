import { app, InvocationContext } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { STORAGE_SETTING } from '../src/config';
import { asBuffer, blobEtag, blobMetadata, boundName, contextLog } from '../src/handlers/context';
import { inferOnce } from '../src/handlers/infer';
import { TRIGGER_PATHS } from '../src/storage/layout';

app.storageBlob('infer', {
  path: TRIGGER_PATHS.infer,
  connection: STORAGE_SETTING,
  source: 'EventGrid',
  handler: async (blob: unknown, context: InvocationContext): Promise<void> => {
    // Claimed first (keyed by name and ETag): an event that reaches two instances is scored once.
    await inferOnce(
      { name: boundName(context), data: asBuffer(blob), metadata: blobMetadata(context) },
      blobEtag(context),
      currentDeps(),
      contextLog(context),
    );
  },
});
