import { app, InvocationContext } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { STORAGE_SETTING } from '../src/config';
import { asBuffer, blobEtag, boundName, contextLog, declaredBlobSize } from '../src/handlers/context';
import { preprocessOnce } from '../src/handlers/preprocess';
import { TRIGGER_PATHS } from '../src/storage/layout';

app.storageBlob('preprocess', {
  path: TRIGGER_PATHS.preprocess,
  connection: STORAGE_SETTING,
  source: 'EventGrid',
  // The host hands Node functions the blob's bytes: no SDK-type binding (a blob client) is
  // available to a Node app (infra/README.md, "Upload size"). The size the blob's properties
  // declare is checked before any decoding.
  handler: async (blob: unknown, context: InvocationContext): Promise<void> => {
    const declaredBytes = declaredBlobSize(context);
    // Claimed first (keyed by name and ETag): an event that reaches two instances runs once.
    await preprocessOnce(
      { name: boundName(context), data: asBuffer(blob), ...(declaredBytes !== undefined ? { declaredBytes } : {}) },
      blobEtag(context),
      currentDeps(),
      contextLog(context),
    );
  },
});
