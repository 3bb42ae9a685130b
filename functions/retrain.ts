import { app, HttpRequest, HttpResponseInit, InvocationContext, Timer } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { contextLog } from '../src/handlers/context';
import { jsonBody, refusal, reviewerOf, toResponse } from '../src/handlers/http';
import { handleGetRun, handleListRuns, handleRetrain, handleRetrainHttp } from '../src/handlers/retrain';

app.timer('retrain', {
  schedule: '%RETRAIN_SCHEDULE%',
  handler: async (_timer: Timer, context: InvocationContext): Promise<void> => {
    await handleRetrain({ requestedBy: 'timer' }, currentDeps(), contextLog(context));
  },
});

app.http('retrainNow', {
  route: 'retrain',
  methods: ['POST'],
  authLevel: 'function',
  handler: async (req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const body = await jsonBody(req, { emptyOk: true });
    if (!body.ok) return refusal(body);
    return toResponse(
      await handleRetrainHttp(
        body.value === undefined ? '' : JSON.stringify(body.value),
        reviewerOf(req),
        currentDeps(),
        contextLog(context),
      ),
    );
  },
});

app.http('runs', {
  route: 'runs',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> => {
    return toResponse(await handleListRuns(req.query.get('limit'), currentDeps()));
  },
});

app.http('run', {
  route: 'runs/{id}',
  methods: ['GET'],
  authLevel: 'function',
  handler: async (req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    return toResponse(await handleGetRun(req.params.id ?? '', currentDeps(), contextLog(context)));
  },
});
