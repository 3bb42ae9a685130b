import { app, HttpResponseInit } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { collectStatus } from '../src/handlers/status';

app.http('status', {
  route: 'status',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (): Promise<HttpResponseInit> => ({ jsonBody: await collectStatus(currentDeps().store, currentDeps().config) }),
});
