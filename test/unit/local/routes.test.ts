/**
 * HTTP routes of the embedded runtime: /api/{route} with {name} and {*rest} parameters.
 */
import { matchRoute } from '../../../src/local/runtime';

describe('HTTP routes', () => {
  it('binds parameters, decodes them and refuses other paths', () => {
    expect(matchRoute('labels/{name}', '/api/labels/a%20b.png')).toEqual({ name: 'a b.png' });
    expect(matchRoute('predictions/{*name}', '/api/predictions/batch%201/x.png')).toEqual({ name: 'batch 1/x.png' });
    expect(matchRoute('status', '/api/status')).toEqual({});
    expect(matchRoute('status', '/api/statusx')).toBeUndefined();
    expect(matchRoute('status', '/status')).toBeUndefined();
  });
});
