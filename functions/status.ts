import { app, HttpResponseInit } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { cachedStatus } from '../src/storage/records/status';

app.http('status', {
  route: 'status',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (): Promise<HttpResponseInit> => ({
    jsonBody: await cachedStatus(currentDeps().store, currentDeps().config),
  }),
});
