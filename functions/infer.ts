import { app, InvocationContext } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { STORAGE_SETTING } from '../src/config';
import { asBuffer, blobMetadata, boundName, contextLog } from '../src/handlers/context';
import { handleInfer } from '../src/handlers/infer';
import { TRIGGER_PATHS } from '../src/storage/layout';

app.storageBlob('infer', {
  path: TRIGGER_PATHS.infer,
  connection: STORAGE_SETTING,
  source: 'EventGrid',
  handler: async (blob: unknown, context: InvocationContext): Promise<void> => {
    await handleInfer(
      { name: boundName(context), data: asBuffer(blob), metadata: blobMetadata(context) },
      currentDeps(),
      contextLog(context),
    );
  },
});
