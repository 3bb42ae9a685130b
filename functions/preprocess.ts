import { app, InvocationContext } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { STORAGE_SETTING } from '../src/config';
import { asBuffer, boundName, contextLog } from '../src/handlers/context';
import { handlePreprocess } from '../src/handlers/preprocess';
import { TRIGGER_PATHS } from '../src/storage/layout';

app.storageBlob('preprocess', {
  path: TRIGGER_PATHS.preprocess,
  connection: STORAGE_SETTING,
  source: 'EventGrid',
  handler: async (blob: unknown, context: InvocationContext): Promise<void> => {
    await handlePreprocess({ name: boundName(context), data: asBuffer(blob) }, currentDeps(), contextLog(context));
  },
});
