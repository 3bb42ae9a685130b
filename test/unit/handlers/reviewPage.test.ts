import {
  classKeys,
  refuseCrossSite,
  reviewerOfRequest,
  serveAsset,
  withName,
  LOGIN_PATH,
} from '../../../src/handlers/reviewPage';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] ?? null });

describe('review page: who is reviewing', () => {
  it('behind App Service Authentication, is the signed-in principal and never a name the client offers', () => {
    const cfg = { reviewAuth: 'app-service' as const, localReviewer: 'ignored' };
    expect(reviewerOfRequest(headers({ 'x-ms-client-principal-name': 'ana@example.org' }), cfg, 'mallory')).toEqual({
      ok: true,
      name: 'ana@example.org',
      verified: true,
    });
    const anonymous = reviewerOfRequest(headers({}), cfg, 'mallory');
    expect(anonymous.ok).toBe(false);
    if (!anonymous.ok) expect(anonymous.response).toMatchObject({ status: 401, jsonBody: { login: LOGIN_PATH } });
  });

  it('on one machine, is the name the page sends, else the setting; never a name with control characters', () => {
    const cfg = { reviewAuth: 'local' as const, localReviewer: 'dr.local' };
    expect(reviewerOfRequest(headers({}), cfg, 'Ana')).toMatchObject({ ok: true, name: 'Ana' });
    expect(reviewerOfRequest(headers({}), cfg)).toMatchObject({ ok: true, name: 'dr.local' });
    expect(reviewerOfRequest(headers({}), { reviewAuth: 'local', localReviewer: undefined })).toMatchObject({
      ok: true,
      name: 'local-reviewer',
    });
    expect(reviewerOfRequest(headers({}), cfg, 'a\nb')).toMatchObject({ ok: false, response: { status: 400 } });
  });

  it('is nobody when the page is off', () => {
    expect(
      reviewerOfRequest(headers({ 'x-ms-client-principal-name': 'ana' }), {
        reviewAuth: 'off',
        localReviewer: undefined,
      }),
    ).toMatchObject({ ok: false, response: { status: 403 } });
  });
});

describe('review page: requests', () => {
  it('takes writes only with the page header', () => {
    expect(refuseCrossSite(headers({}))?.status).toBe(403);
    expect(refuseCrossSite(headers({ 'x-triage-review': '1' }))).toBeUndefined();
  });

  it.each(['a/../b.png', '../b.png', '/abs.png', 'a\\b.png', 'a\u0000b.png', 'a//b.png', ''])(
    'refuses the image name %j',
    async (name) => {
      const r = await withName({ params: { name } }, () => Promise.resolve({ status: 200 }));
      expect(r.status).toBe(400);
    },
  );

  it('serves only its own assets', () => {
    expect(serveAsset('review.js').status).toBe(200);
    expect(serveAsset('../package.json').status).toBe(404);
    expect(serveAsset('constructor').status).toBe(404);
    expect(serveAsset('index.html').status).toBe(404);
  });
});

describe('review page: one key per class', () => {
  it('uses digits for digit classes and first letters otherwise, falling back to positions when letters collide', () => {
    expect(classKeys(['0', '1', '9'])).toEqual({ '0': '0', '1': '1', '9': '9' });
    expect(classKeys(['NORMAL', 'PNEUMONIA'])).toEqual({ NORMAL: 'N', PNEUMONIA: 'P' });
    expect(classKeys(['normal', 'nodule', 'effusion'])).toEqual({ normal: '1', nodule: '2', effusion: '3' });
  });
});
