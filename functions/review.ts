import { app, HttpRequest, HttpResponseInit } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { jsonBody, refusal, reviewerOf, toResponse } from '../src/handlers/http';
import { handleGetPrediction, handleLabel, handleWorklist } from '../src/handlers/review';

app.http('labels', {
  route: 'labels/{*name}',
  methods: ['POST'],
  authLevel: 'function',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> => {
    const body = await jsonBody(req);
    if (!body.ok) return refusal(body);
    return toResponse(
      await handleLabel({ name: req.params.name ?? '', body: body.value, by: reviewerOf(req) }, currentDeps()),
    );
  },
});

app.http('worklist', {
  route: 'worklist',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> =>
    toResponse(
      await handleWorklist(
        {
          page: req.query.get('page'),
          pageSize: req.query.get('pageSize'),
          reason: req.query.get('reason'),
          prefix: req.query.get('prefix'),
        },
        currentDeps(),
      ),
    ),
});

app.http('predictions', {
  route: 'predictions/{*name}',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> =>
    toResponse(await handleGetPrediction(req.params.name ?? '', currentDeps())),
});
