import { toLoadedFunctions, UnsupportedFunctionError, type CoreRegistration } from '@image-triage/local-functions-host';
import { matchRoute } from '../../../src/local/runtime';

const cb = () => undefined;
function reg(
  name: string,
  bindings: CoreRegistration['metadata']['bindings'],
  retryOptions?: unknown,
): CoreRegistration {
  return { metadata: { name, bindings, ...(retryOptions !== undefined ? { retryOptions } : {}) }, callback: cb };
}

describe('function app validation', () => {
  it('accepts EventGrid blob, timer and HTTP triggers', () => {
    const fns = toLoadedFunctions([
      reg('a', {
        t: {
          type: 'blobTrigger',
          direction: 'in',
          path: 'uploads/{name}',
          source: 'EventGrid',
          connection: 'AzureWebJobsStorage',
        },
      }),
      reg('b', { t: { type: 'timerTrigger', direction: 'in', schedule: '%S%' } }),
      reg('c', {
        t: { type: 'httpTrigger', direction: 'in', route: 'labels/{name}', methods: ['POST'] },
        $return: { type: 'http', direction: 'out' },
      }),
    ]);
    expect(fns.map((f) => f.trigger.kind)).toEqual(['blob', 'timer', 'http']);
    expect(fns[0]?.trigger).toMatchObject({ container: 'uploads', path: 'uploads/{name}' });
  });

  it.each([
    [
      'a polling blob trigger',
      reg('p', { t: { type: 'blobTrigger', direction: 'in', path: 'uploads/{name}' } }),
      /EventGrid/,
    ],
    [
      'a queue trigger',
      reg('q', { t: { type: 'queueTrigger', direction: 'in', queueName: 'x' } }),
      /queueTrigger.*does not run/,
    ],
    [
      'an output binding',
      reg('o', {
        t: { type: 'timerTrigger', direction: 'in', schedule: '* * * * * *' },
        out: { type: 'blob', direction: 'out', path: 'x/y' },
      }),
      /binding/,
    ],
    [
      'a retry policy',
      reg('r', { t: { type: 'timerTrigger', direction: 'in', schedule: '* * * * * *' } }, { strategy: 'fixedDelay' }),
      /retry/,
    ],
    [
      'two triggers',
      reg('two', { a: { type: 'timerTrigger', schedule: '* * * * * *' }, b: { type: 'httpTrigger' } }),
      /exactly one trigger/,
    ],
  ])('refuses %s, so nothing registered for Azure goes unrun locally', (_what, r, msg) => {
    expect(() => toLoadedFunctions([r])).toThrow(UnsupportedFunctionError);
    expect(() => toLoadedFunctions([r])).toThrow(msg);
  });
});

describe('HTTP routes', () => {
  it('binds parameters, decodes them and refuses other paths', () => {
    expect(matchRoute('labels/{name}', '/api/labels/a%20b.png')).toEqual({ name: 'a b.png' });
    expect(matchRoute('predictions/{*name}', '/api/predictions/batch%201/x.png')).toEqual({ name: 'batch 1/x.png' });
    expect(matchRoute('status', '/api/status')).toEqual({});
    expect(matchRoute('status', '/api/statusx')).toBeUndefined();
    expect(matchRoute('status', '/status')).toBeUndefined();
  });
});
