import { app, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { currentDeps } from '../src/composition';
import { contextLog } from '../src/handlers/context';
import { handleRetrainHttp } from '../src/handlers/retrain';
import { handleLabel, handleWorklist, undoLabel } from '../src/handlers/review';
import {
  asPage,
  caseDetail,
  pageRead,
  pageWrite,
  renderImage,
  reviewerOfRequest,
  serveAsset,
  servePage,
  statusPanel,
  toHttp,
  withName,
} from '../src/handlers/reviewPage';

// The reviewer's page and its endpoints (src/handlers/reviewPage.ts). Anonymous at the function
// level (a browser has no function key): TRIAGE_REVIEW_AUTH decides who gets an answer.

app.http('reviewPage', {
  route: 'review',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> => toHttp(servePage(req.headers, currentDeps())),
});

app.http('reviewAsset', {
  route: 'review/assets/{file}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: async (req: HttpRequest): Promise<HttpResponseInit> => {
    const who = reviewerOfRequest(req.headers, currentDeps().config);
    return toHttp(who.ok ? serveAsset(req.params.file ?? '') : who.response);
  },
});

app.http('reviewMe', {
  route: 'review/me',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) =>
    pageRead(req, async (deps, reviewer) => asPage({ status: 200, body: { reviewer, auth: deps.config.reviewAuth } })),
});

app.http('reviewWorklist', {
  route: 'review/worklist',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) =>
    pageRead(req, async (deps) =>
      asPage(
        await handleWorklist(
          {
            page: req.query.get('page'),
            pageSize: req.query.get('pageSize'),
            reason: req.query.get('reason'),
            prefix: req.query.get('prefix'),
          },
          deps,
        ),
      ),
    ),
});

app.http('reviewCase', {
  route: 'review/cases/{*name}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) => pageRead(req, (deps) => withName(req, (name) => caseDetail(name, deps))),
});

app.http('reviewImage', {
  route: 'review/images/{*name}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) =>
    pageRead(req, (deps) => withName(req, (name) => renderImage(name, req.query.get('view'), deps))),
});

app.http('reviewLabel', {
  route: 'review/labels/{*name}',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) =>
    pageWrite(req, (body, reviewer, deps) =>
      withName(req, async (name) => asPage(await handleLabel({ name, body, by: reviewer.name, verified: true }, deps))),
    ),
});

app.http('reviewUndo', {
  route: 'review/undo/{*name}',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) =>
    pageWrite(req, (body, reviewer, deps) =>
      withName(req, async (name) => {
        if (typeof body.labeledAt !== 'string')
          return asPage({ status: 400, body: { error: 'The body needs "labeledAt": the time of the label to undo.' } });
        return asPage(await undoLabel({ name, by: reviewer.name, labeledAt: body.labeledAt }, deps));
      }),
    ),
});

app.http('reviewStatus', {
  route: 'review/status',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest) => pageRead(req, (deps) => statusPanel(deps)),
});

app.http('reviewRetrain', {
  route: 'review/retrain',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: (req: HttpRequest, context: InvocationContext) =>
    pageWrite(req, async (body, reviewer, deps) =>
      asPage(await handleRetrainHttp(JSON.stringify(body), reviewer.name, deps, contextLog(context))),
    ),
});
