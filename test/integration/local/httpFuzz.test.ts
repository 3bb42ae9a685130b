/**
 * Every HTTP route of the function app (read from its registrations, so routes added later are
 * covered too) against hostile requests on the embedded runtime: malformed percent-encodings,
 * traversal out of the route's container, overlong targets and names, oversize bodies, wrong
 * content types and wrong methods. None may crash the runtime, each gets a 4xx, none writes a
 * blob, and no storage request leaves the containers the route works on.
 */
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import { loadConfig } from '../../../src/config';
import { EmbeddedRuntime, loadFunctionApp, MAX_HTTP_BODY_BYTES } from '../../../src/local/runtime';
import { BlobStore } from '../../../src/storage/blobStore';
import { CONTAINERS, HOST_CONTAINER, paths } from '../../../src/storage/layout';
import { MAX_JSON_BODY_BYTES } from '../../../src/handlers/http';
import { SOURCE_SHA_KEY } from '../../../src/storage/records/write';
import { RECORD_KEY } from '../../../src/storage/records/preprocessed';
import { freshStore, quietLog, testConnectionString } from '../../helpers/azurite';

const settings = { RETRAIN_SCHEDULE: '0 0 0 1 1 *', SWEEP_SCHEDULE: '0 0 0 1 1 *' };
const IMAGE = 'batch/7/00012.png';
const SHA = 'a'.repeat(64);

/** Every blob of the account: container/name -> ETag. */
async function snapshot(store: BlobStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const c of store.service.listContainers()) {
    for await (const e of store.list(c.name)) out.set(`${c.name}/${e.name}`, e.etag);
  }
  return out;
}

interface Answer {
  status: number;
  body: string;
  contentType: string | undefined;
}

function send(
  port: number,
  method: string,
  target: string,
  opts: { headers?: Record<string, string>; body?: Buffer; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...(opts.headers ?? {}) };
    if (opts.body !== undefined && opts.chunked !== true) headers['content-length'] = String(opts.body.length);
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          contentType: res.headers['content-type'],
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body !== undefined) {
      // Written in slices, so an early answer (413) can arrive while the body is still going out.
      const b = opts.body;
      let off = 0;
      const next = (): void => {
        while (off < b.length) {
          const piece = b.subarray(off, off + 64 * 1024);
          off += piece.length;
          if (!req.write(piece)) {
            req.once('drain', next);
            return;
          }
        }
        req.end();
      };
      next();
    } else req.end();
  });
}

/** A path for a route with every `{param}` replaced by `value` (already percent-encoded). */
function pathFor(route: string, value: string): string {
  return `/api/${route.replace(/\{\*?\w+\??\}/g, value)}`;
}

/** POST routes whose body is checked by src/handlers/http.ts jsonBody before anything else. */
const JSON_ROUTES = ['labels/{*name}', 'retrain'];

const HOSTILE_NAMES = [
  '%E0%A4%A', // truncated UTF-8 sequence (the request that took the runtime down)
  '%', // a lone percent sign
  '%zz', // not hex
  '%C0%AF', // overlong encoding of "/"
  '%ED%A0%80', // a UTF-16 surrogate
  '..%2Fmodels%2Fcurrent', // traversal into models/
  '..%2Fmodels%2Fcurrent.json',
  '..%2F..%2Fmodels%2Fcurrent',
  '..%2Fpreprocessed%2Fbatch%2F7%2F00012.png',
  'x%2F..%2F..%2Fmodels%2Fcurrent',
  '%2E%2E%2Fmodels%2Fcurrent',
  '..%5Cmodels%5Ccurrent', // backslashes
  '%2Fmodels%2Fcurrent', // a leading slash
  // (A bare "." or ".." segment resolves as in any URL, before routing: /api/runs/. is /api/runs/.)
  'a%2F.%2Fb',
  'a%00b', // control characters
  'a%0Ab',
  'a%7Fb',
  'a%2F%2Fb', // an empty segment
  '~invalid-names%2Fabc', // the reserved folder
  'n'.repeat(1020), // a name whose records would not fit
];

describe('HTTP routes under hostile requests', () => {
  let store: BlobStore;
  let rt: EmbeddedRuntime;
  let storageRequests: { method: string; container: string; path: string }[] = [];
  const unhandled: unknown[] = [];
  const errors: string[] = [];
  const onUnhandled = (err: unknown): void => {
    unhandled.push(err);
  };
  const onRequest = (msg: unknown): void => {
    const req = (msg as { request: http.ClientRequest }).request;
    if (req.getHeader('host') === `127.0.0.1:${rt.httpPort}`) return; // the test's own requests
    const p = req.path.split('?')[0] ?? '';
    const [, , container = ''] = p.split('/'); // /devstoreaccount1/{container}/{blob}
    storageRequests.push({ method: req.method, container, path: p });
  };

  beforeAll(async () => {
    store = await freshStore();
    // An image with its records, a promoted model: what a traversal would reach for.
    await store.put(CONTAINERS.preprocessed, paths.preprocessed(IMAGE), Buffer.alloc(16), {
      metadata: { [SOURCE_SHA_KEY]: SHA, [RECORD_KEY]: JSON.stringify({ source: { sha256: SHA } }) },
    });
    await store.putJson(CONTAINERS.predictions, paths.prediction(IMAGE), {
      upload: IMAGE,
      model: { version: 'v1' },
      topClass: '7',
      confidence: 0.9,
    });
    await store.putJson(CONTAINERS.models, paths.currentModel(), { version: 'v1' });
    await store.putJson(CONTAINERS.models, paths.modelCard('v1'), {
      version: 'v1',
      classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
      preprocessing: { profile: 'mnist', version: '1.0.0' },
      inputShape: [28, 28, 1],
    });
    await store.put(CONTAINERS.uploads, IMAGE, Buffer.from('not an image'));
    // Only the HTTP functions: no trigger may write while the store is compared.
    rt = await EmbeddedRuntime.start({
      config: loadConfig({ AzureWebJobsStorage: testConnectionString(), TRIAGE_LOCAL_HTTP_PORT: '0' }),
      settings,
      functions: loadFunctionApp().filter((f) => f.trigger.kind === 'http'),
      log: { ...quietLog, error: (m) => errors.push(m) },
    });
    process.on('unhandledRejection', onUnhandled);
    diagnostics.subscribe('http.client.request.start', onRequest);
  });
  afterAll(async () => {
    diagnostics.unsubscribe('http.client.request.start', onRequest);
    process.off('unhandledRejection', onUnhandled);
    await rt.stop();
    rt.deps.models.dispose();
  });

  it('answers every hostile request with a 4xx, writes nothing and reads nothing outside the route', async () => {
    const routes = rt.functions.flatMap((f) => (f.trigger.kind === 'http' ? [{ name: f.name, ...f.trigger }] : []));
    expect(routes.map((r) => r.route)).toEqual(
      expect.arrayContaining([
        'predictions/{*name}',
        'labels/{*name}',
        'status',
        'runs/{id}',
        'retrain',
        'worklist',
        'runs',
      ]),
    );
    const before = await snapshot(store);
    const port = rt.httpPort;
    const json = { 'content-type': 'application/json' };
    const failures: string[] = [];
    let sent = 0;
    const check = async (
      what: string,
      method: string,
      target: string,
      opts: Parameters<typeof send>[3] = {},
      expected?: number,
    ): Promise<void> => {
      storageRequests = [];
      sent++;
      let a: Answer;
      try {
        a = await send(port, method, target, opts);
      } catch (err) {
        // Only an oversize body may see its connection closed after the 413 (the client may still be writing).
        if (expected === 413 && /EPIPE|ECONNRESET/.test(String(err))) return;
        failures.push(`${what}: ${method} ${target.slice(0, 80)}: no answer: ${String(err)}`);
        return;
      }
      if (a.status < 400 || a.status > 499)
        failures.push(`${what}: ${method} ${target.slice(0, 80)} -> ${a.status} ${a.body.slice(0, 120)}`);
      if (expected !== undefined && a.status !== expected)
        failures.push(
          `${what}: ${method} ${target.slice(0, 80)} -> ${a.status}, expected ${expected}: ${a.body.slice(0, 120)}`,
        );
      if (!/application\/json/.test(a.contentType ?? ''))
        failures.push(`${what}: ${method} ${target.slice(0, 80)}: answer is ${a.contentType ?? 'untyped'}`);
      for (const r of storageRequests) {
        if (r.method !== 'GET' && r.method !== 'HEAD')
          failures.push(`${what}: ${method} ${target.slice(0, 80)} wrote ${r.method} ${r.path}`);
        if (r.path.includes('/../') || r.path.includes('/./'))
          failures.push(`${what}: ${method} ${target.slice(0, 80)} sent ${r.path}`);
      }
      if (target.includes('predictions/') || target.includes('labels/')) {
        // A name route refuses a bad name before any storage call.
        for (const r of storageRequests)
          failures.push(`${what}: ${method} ${target.slice(0, 80)} reached storage: ${r.method} ${r.path}`);
      }
    };

    for (const r of routes) {
      const hasParam = /\{/.test(r.route);
      const method = r.methods[0] ?? 'GET';
      const body = method === 'POST' ? { headers: json, body: Buffer.from('{"class":"7"}') } : {};
      // Malformed percent-encoding anywhere in the path: 400, on every route.
      await check('malformed path', method, `/api/${r.route.replace(/\{.*$/, '')}%E0%A4%A`, body, 400);
      await check('malformed path', method, `${pathFor(r.route, 'x')}%`, body);
      if (hasParam) for (const n of HOSTILE_NAMES) await check('hostile name', method, pathFor(r.route, n), body);
      // An overlong target: 414.
      await check('overlong target', method, pathFor(r.route, 'x') + '?q=' + 'a'.repeat(13_000), body, 414);
      // Methods the route does not take: 405 with Allow.
      for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'PROPFIND'].filter(
        (x) => !r.methods.includes(x),
      )) {
        await check('wrong method', m, pathFor(r.route, 'x'), {}, 405);
      }
      if (method === 'POST') {
        // The JSON routes checked here answer exactly; a route with its own checks first (e.g. a
        // header it requires) may refuse with another 4xx.
        const exact = (status: number): number | undefined => (JSON_ROUTES.includes(r.route) ? status : undefined);
        const good = pathFor(r.route, encodeURIComponent(IMAGE).replace(/%2F/g, '/'));
        await check(
          'text/plain',
          'POST',
          good,
          { headers: { 'content-type': 'text/plain' }, body: Buffer.from('{"class":"7","force":true}') },
          exact(415),
        );
        await check('no content type', 'POST', good, { body: Buffer.from('{"class":"7","force":true}') }, exact(415));
        await check(
          'form',
          'POST',
          good,
          { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from('class=7') },
          exact(415),
        );
        await check('bad JSON', 'POST', good, { headers: json, body: Buffer.from('{"class":') }, exact(400));
        const big = Buffer.from(JSON.stringify({ class: '7', note: 'x'.repeat(MAX_JSON_BODY_BYTES) }));
        await check('route limit', 'POST', good, { headers: json, body: big }, exact(413));
        await check('route limit, chunked', 'POST', good, { headers: json, body: big, chunked: true }, exact(413));
        const huge = Buffer.alloc(MAX_HTTP_BODY_BYTES * 3, 0x20);
        await check('runtime limit', 'POST', good, { headers: json, body: huge }, 413);
        await check('runtime limit, chunked', 'POST', good, { headers: json, body: huge, chunked: true }, 413);
        await check('bad length', 'POST', good, { headers: { ...json, 'content-length': '99999999999' } }, 413);
      }
    }
    // Query strings the routes read.
    await check('query', 'GET', '/api/worklist?page=%E0%A4%A&pageSize=-1', {}, 400);
    await check('query', 'GET', '/api/runs?limit=%zz', {}, 400);
    await check('run id', 'GET', '/api/runs/..%2Fmodels%2Fcurrent', {}, 400);
    // Not a path at all.
    await check('absolute form', 'GET', 'http://example.com/api/status', {}, 400);
    // The runtime is still there, and nothing crashed outside a handler.
    expect(unhandled).toEqual([]);
    expect(failures).toEqual([]);
    const alive = await send(port, 'GET', '/api/status');
    expect({ status: alive.status, errors }).toEqual({ status: 200, errors: [] });
    expect(sent).toBeGreaterThan(100);
    // Nothing was written anywhere (the status call only reads).
    const after = await snapshot(store);
    after.forEach((etag, k) => {
      if (k.startsWith(`${HOST_CONTAINER}/`)) return;
      expect({ k, etag }).toEqual({ k, etag: before.get(k) });
    });
    expect([...after.keys()].filter((k) => !k.startsWith(`${HOST_CONTAINER}/`)).sort()).toEqual(
      [...before.keys()].filter((k) => !k.startsWith(`${HOST_CONTAINER}/`)).sort(),
    );
  });

  it('answers 409 with a message when the label record is not JSON, and labels nothing', async () => {
    await store.put(CONTAINERS.labels, paths.label(IMAGE), Buffer.from('this is not json'));
    const target = `/api/labels/${encodeURIComponent(IMAGE)}`;
    const a = await send(rt.httpPort, 'POST', target, {
      headers: { 'content-type': 'application/json' },
      body: Buffer.from('{"class":"7"}'),
    });
    expect(a.status).toBe(409);
    expect((JSON.parse(a.body) as { error: string }).error).toMatch(/not a label record/);
    expect((await store.get(CONTAINERS.labels, paths.label(IMAGE)))?.data.toString()).toBe('this is not json');
  });

  it('still labels a good request, with application/json and a charset', async () => {
    await store.put(
      CONTAINERS.labels,
      paths.label(IMAGE),
      Buffer.from('{"class":"3","labeledBy":"a","labeledAt":"2026-01-01T00:00:00Z","history":[]}'),
    );
    const a = await send(rt.httpPort, 'POST', `/api/labels/${encodeURIComponent(IMAGE)}`, {
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: Buffer.from('{"class":"7"}'),
    });
    expect(a.status).toBe(200);
    expect(
      (await store.getJson<{ class: string; history: { class: string }[] }>(CONTAINERS.labels, paths.label(IMAGE)))
        ?.value,
    ).toMatchObject({ class: '7', history: [{ class: '3' }] });
  });
});
