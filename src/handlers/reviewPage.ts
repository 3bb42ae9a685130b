/**
 * The reviewer's page (/api/review/) and the JSON and image endpoints it uses. Labels go through
 * handleLabel and undoLabel (review.ts), so labels made on the page and by the CLI or the labels
 * API are the same records.
 *
 * Who is reviewing (TRIAGE_REVIEW_AUTH):
 *   app-service  the signed-in principal that App Service Authentication (Microsoft Entra ID)
 *                puts in x-ms-client-principal-name; the platform removes such headers from
 *                incoming requests, so the client cannot choose it. Without it: 401 (the page
 *                redirects to the sign-in).
 *   local        one machine, no sign-in: the name the page sends, else TRIAGE_LOCAL_REVIEWER.
 *   off          everything answers 403 (the default, so a deployment without sign-in never
 *                serves the page to anyone).
 * Writes need the header `x-triage-review: 1`, which a cross-site form or image cannot send.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { currentDeps, type Deps } from '../composition';
import { type Config, validReviewerName } from '../config';
import { ImageRejection } from '../imaging';
import { renderNpy, renderUpload } from '../imaging/render';
import { findCard, readCurrent } from '../registry/registry';
import { listRuns } from '../jobs/runs';
import { CONTAINERS, invalidUploadName, paths } from '../storage/layout';
import type { LabelRecord } from '../storage/records/label';
import type { PredictionRecord } from '../storage/records/prediction';
import { readPreprocessedRecord } from '../storage/records/preprocessed';
import { collectStatus } from '../storage/records/status';
import { warmWorklist } from '../triage/worklist';
import { jsonBody } from './http';

/** Where the page lives (the Functions route prefix `api` + the review routes). */
export const REVIEW_BASE = '/api/review/';
/** The page on the embedded runtime. */
export function reviewPageUrl(port: number): string {
  return `http://127.0.0.1:${port}${REVIEW_BASE}`;
}
export const LOGIN_PATH = `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(REVIEW_BASE)}`;
/** Header every write from the page carries (a cross-site request cannot set it without CORS, which is off). */
export const WRITE_HEADER = 'x-triage-review';
/** Side of the rendered original upload (long side, pixels). */
export const ORIGINAL_MAX_SIDE = 1024;

export interface HeaderSource {
  get(name: string): string | null;
}

export interface PageResponse {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
  jsonBody?: unknown;
}

export type Reviewer = { ok: true; name: string; verified: boolean } | { ok: false; response: PageResponse };

const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

function json(status: number, body: unknown): PageResponse {
  return { status, jsonBody: body, headers: { ...SECURITY_HEADERS, 'cache-control': 'no-store' } };
}

/**
 * The reviewer of a request, or the response that refuses it. `offered` is the name the page
 * sends (used only with TRIAGE_REVIEW_AUTH=local).
 */
export function reviewerOfRequest(
  headers: HeaderSource,
  config: Pick<Config, 'reviewAuth' | 'localReviewer'>,
  offered?: string,
): Reviewer {
  const mode = config.reviewAuth;
  if (mode === 'off') {
    return {
      ok: false,
      response: json(403, {
        error:
          'The review page is off here (TRIAGE_REVIEW_AUTH=off): set it to app-service behind App Service Authentication, or to local on one machine.',
      }),
    };
  }
  if (mode === 'app-service') {
    const name = headers.get('x-ms-client-principal-name');
    if (name === null || name.trim() === '')
      return { ok: false, response: json(401, { error: 'Sign in first.', login: LOGIN_PATH }) };
    return { ok: true, name: name.trim(), verified: true };
  }
  const fromPage = offered?.trim();
  if (fromPage !== undefined && fromPage !== '') {
    if (!validReviewerName(fromPage))
      return {
        ok: false,
        response: json(400, { error: 'The reviewer name must be 1 to 100 characters without control characters.' }),
      };
    return { ok: true, name: fromPage, verified: false };
  }
  return { ok: true, name: config.localReviewer ?? 'local-reviewer', verified: false };
}

/** Writes must carry WRITE_HEADER; undefined when this one does. */
export function refuseCrossSite(headers: HeaderSource): PageResponse | undefined {
  return headers.get(WRITE_HEADER) === '1'
    ? undefined
    : json(403, { error: `Writes from the review page carry the header ${WRITE_HEADER}: 1.` });
}

/** The image name from a `{*name}` route, or the 400 that refuses it. */
export function checkName(name: string): { ok: true; name: string } | { ok: false; response: PageResponse } {
  const bad = invalidUploadName(name);
  return bad === undefined
    ? { ok: true, name }
    : { ok: false, response: json(400, { error: `Not an image name: ${bad}.` }) };
}

/** Runs `fn` with the route's `{*name}` when it is an image name, else answers 400. */
export async function withName(
  req: { params: Record<string, string> },
  fn: (name: string) => Promise<PageResponse>,
): Promise<PageResponse> {
  const n = checkName(req.params.name ?? '');
  return n.ok ? fn(n.name) : n.response;
}

// ---------- the page and its assets ----------

const ASSETS: Readonly<Record<string, string>> = {
  'review.js': 'text/javascript; charset=utf-8',
  'review.css': 'text/css; charset=utf-8',
};

let webDir: string | undefined;

/** web/review beside src/ (found from the sources under ts-jest and from dist/ once compiled). */
function webRoot(): string {
  if (webDir !== undefined) return webDir;
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'web', 'review');
    if (existsSync(path.join(candidate, 'index.html'))) return (webDir = candidate);
    dir = path.dirname(dir);
  }
  throw new Error(`web/review/index.html not found above ${__dirname}`);
}

const fileCache = new Map<string, Buffer>();

function readWeb(file: string): Buffer {
  let b = fileCache.get(file);
  if (b === undefined) {
    b = readFileSync(path.join(webRoot(), file));
    fileCache.set(file, b);
  }
  return b;
}

export function servePage(headers: HeaderSource, deps: Deps): PageResponse {
  if (deps.config.reviewAuth === 'app-service' && (headers.get('x-ms-client-principal-name') ?? '') === '') {
    return { status: 302, headers: { ...SECURITY_HEADERS, location: LOGIN_PATH, 'cache-control': 'no-store' } };
  }
  if (deps.config.reviewAuth === 'off') {
    return {
      status: 403,
      headers: { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' },
      body: 'The review page is off here (TRIAGE_REVIEW_AUTH=off).\n',
    };
  }
  warmWorklist(deps.store); // the page asks for it next
  return {
    status: 200,
    headers: {
      ...SECURITY_HEADERS,
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': CSP,
      'cache-control': 'no-cache',
    },
    body: readWeb('index.html'),
  };
}

export function serveAsset(file: string): PageResponse {
  const type = Object.prototype.hasOwnProperty.call(ASSETS, file) ? ASSETS[file] : undefined;
  if (type === undefined) return json(404, { error: 'No such asset.' });
  return {
    status: 200,
    headers: { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': 'no-cache' },
    body: readWeb(file),
  };
}

// ---------- what the page reads ----------

/** One key per class: the digit for digit classes, else the first letter; digits by position when letters collide. */
export function classKeys(classNames: readonly string[]): Record<string, string> {
  if (classNames.every((c) => /^\d$/.test(c))) return Object.fromEntries(classNames.map((c) => [c, c]));
  const letters = classNames.map((c) => (/^[a-z]/i.test(c) ? c[0]?.toUpperCase() : undefined));
  if (letters.every((l) => l !== undefined) && new Set(letters).size === letters.length) {
    return Object.fromEntries(classNames.map((c, i) => [c, letters[i] as string]));
  }
  return Object.fromEntries(classNames.slice(0, 10).map((c, i) => [c, String((i + 1) % 10)]));
}

export interface CaseDetail {
  upload: string;
  sha256: string;
  prediction: PredictionRecord | null;
  preprocessing: {
    profile: string;
    profileVersion: string;
    format: string;
    width: number;
    height: number;
    bytes: number;
    quality: { warnings: string[]; blank: boolean; nearConstant: boolean };
    dicom?: Record<string, unknown>;
  };
  classNames: string[];
  keys: Record<string, string>;
  /** Screening models: the class whose probability raises the "abnormal" flag. */
  positiveClass: string | null;
  label: LabelRecord | null;
  flagged: boolean;
}

export async function caseDetail(name: string, deps: Deps): Promise<PageResponse> {
  const { store } = deps;
  const [pre, prediction, label, flag] = await Promise.all([
    readPreprocessedRecord(store, name),
    store.getJson<PredictionRecord>(CONTAINERS.predictions, paths.prediction(name)),
    store.getJson<LabelRecord>(CONTAINERS.labels, paths.label(name)),
    store.head(CONTAINERS.flagged, paths.flagged(name)),
  ]);
  if (pre === undefined) return json(404, { error: `There is no preprocessed image named ${JSON.stringify(name)}.` });
  const version = prediction?.value.model.version ?? (await readCurrent(store))?.value.version;
  const card = version === undefined ? undefined : await findCard(store, version);
  const classNames = prediction?.value.classNames ?? card?.classNames ?? [];
  const body: CaseDetail = {
    upload: name,
    sha256: pre.source.sha256,
    prediction: prediction?.value ?? null,
    preprocessing: {
      profile: pre.profile.name,
      profileVersion: pre.profile.version,
      format: pre.source.format,
      width: pre.source.width,
      height: pre.source.height,
      bytes: pre.source.bytes,
      quality: { warnings: pre.quality.warnings, blank: pre.quality.blank, nearConstant: pre.quality.nearConstant },
      ...(pre.dicom !== undefined ? { dicom: { ...pre.dicom } } : {}),
    },
    classNames,
    keys: classKeys(classNames),
    positiveClass: card?.thresholds.screening?.positiveClass ?? null,
    label: label?.value ?? null,
    flagged: flag !== undefined,
  };
  return json(200, body);
}

/** `view`: original (the upload rendered by the server) or input (what the model saw). */
export async function renderImage(name: string, view: string | null, deps: Deps): Promise<PageResponse> {
  const { store, config } = deps;
  const png = (r: { png: Buffer }) => ({
    status: 200,
    headers: { ...SECURITY_HEADERS, 'content-type': 'image/png', 'cache-control': 'private, max-age=3600' },
    body: r.png,
  });
  if (view === 'input') {
    const npy = await store.get(CONTAINERS.preprocessed, paths.preprocessed(name));
    if (npy === undefined) return json(404, { error: `There is no preprocessed image named ${JSON.stringify(name)}.` });
    return png(await renderNpy(npy.data));
  }
  if (view !== 'original' && view !== null) return json(400, { error: 'view must be original or input.' });
  const upload = await store.get(CONTAINERS.uploads, paths.upload(name));
  if (upload === undefined) return json(404, { error: `There is no upload named ${JSON.stringify(name)}.` });
  try {
    return png(
      await renderUpload(upload.data, ORIGINAL_MAX_SIDE, {
        maxInputBytes: config.maxUploadBytes,
        maxPixels: config.maxPixels,
      }),
    );
  } catch (err) {
    if (err instanceof ImageRejection)
      return json(422, { error: `The upload cannot be shown (${err.code}): ${err.message}` });
    throw err;
  }
}

/** Figures of the card worth a headline: accuracy, selective risk and coverage, calibration. */
const HEADLINE = ['accuracy', 'selectiveRisk', 'selectiveCoverage', 'eceCalibrated', 'aurc'] as const;

export async function statusPanel(deps: Deps): Promise<PageResponse> {
  const { store } = deps;
  const [status, current, runs] = await Promise.all([
    collectStatus(store),
    readCurrent(store),
    listRuns(store, { limit: 5 }),
  ]);
  const card = current === undefined ? undefined : await findCard(store, current.value.version);
  const metrics: Record<string, number | string | null> = {};
  for (const k of HEADLINE) if (card?.metrics[k] !== undefined) metrics[k] = card.metrics[k] ?? null;
  return json(200, {
    status,
    model:
      card === undefined
        ? null
        : {
            version: card.version,
            architecture: card.architecture,
            createdAt: card.createdAt,
            promotedAt: current?.value.promotedAt ?? null,
            classNames: card.classNames,
            trainImages: card.data.trainImages,
            metrics,
            screening: card.thresholds.screening ?? null,
          },
    runs: runs.map((r) => ({
      runId: r.runId,
      state: r.state,
      createdAt: r.createdAt,
      requestedBy: r.requestedBy,
      outcome: r.outcome ?? null,
      reason: r.reason ?? r.error ?? null,
    })),
  });
}

// ---------- the HTTP glue the registrations in functions/reviewPage.ts use ----------

export function toHttp(r: PageResponse): HttpResponseInit {
  return {
    status: r.status,
    ...(r.headers !== undefined ? { headers: r.headers } : {}),
    ...(r.jsonBody !== undefined ? { jsonBody: r.jsonBody } : { body: r.body }),
  };
}

/** A read: answered only for a reviewer (see reviewerOfRequest). */
export async function pageRead(
  req: HttpRequest,
  fn: (deps: Deps, reviewer: string) => Promise<PageResponse>,
): Promise<HttpResponseInit> {
  const deps = currentDeps();
  const who = reviewerOfRequest(req.headers, deps.config, req.headers.get('x-triage-reviewer') ?? undefined);
  if (!who.ok) return toHttp(who.response);
  return toHttp(await fn(deps, who.name));
}

/** A write: a JSON body, the page's write header, and the reviewer (the principal in Azure, never a name the body offers). */
export async function pageWrite(
  req: HttpRequest,
  fn: (
    body: Record<string, unknown>,
    reviewer: { name: string; verified: boolean },
    deps: Deps,
  ) => Promise<PageResponse>,
): Promise<HttpResponseInit> {
  const deps = currentDeps();
  const refused = refuseCrossSite(req.headers);
  if (refused !== undefined) return toHttp(refused);
  const parsed = await jsonBody(req);
  if (!parsed.ok) return toHttp(json(parsed.status, { error: parsed.error }));
  const body = parsed.value;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return toHttp(json(400, { error: 'The body must be a JSON object.' }));
  const fields = body as Record<string, unknown>;
  const offered = typeof fields.reviewer === 'string' ? fields.reviewer : undefined;
  const who = reviewerOfRequest(req.headers, deps.config, offered);
  if (!who.ok) return toHttp(who.response);
  const { reviewer: _dropped, ...rest } = fields;
  return toHttp(await fn(rest, { name: who.name, verified: who.verified }, deps));
}

export function asPage(r: { status: number; body: unknown }): PageResponse {
  return json(r.status, r.body);
}
