/**
 * The function app loader: registrations made through @azure/functions (its app.* calls end in
 * @azure/functions-core's registerFunction, which this package stands in for) become the triggers a
 * host drives; anything a local host would not run is refused by name.
 */
import path from 'node:path';
import { loadFunctionApp, toLoadedFunctions, UnsupportedFunctionError, type CoreRegistration } from '../src';

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

describe('loadFunctionApp', () => {
  const fixtures = path.join(__dirname, 'fixtures');

  it('requires every registration file of the folder, as the host does, and returns its functions', async () => {
    const fns = loadFunctionApp(path.relative(process.cwd(), path.join(fixtures, 'app')), { extension: '.js' });
    expect(fns.map((f) => [f.name, f.trigger])).toEqual([
      ['greet', { kind: 'http', route: 'hello/{name}', methods: ['GET'], authLevel: 'anonymous' }],
      ['uploads', { kind: 'blob', path: 'incoming/{name}', container: 'incoming', connection: 'AzureWebJobsStorage' }],
      ['nightly', { kind: 'timer', schedule: '0 0 3 * * *', runOnStartup: false }],
    ]);
    // The callbacks are the app's handlers (wrapped by @azure/functions), ready to be invoked.
    expect(fns.every((f) => typeof f.callback === 'function')).toBe(true);
  });

  it('refuses an app with a trigger a local host does not run', () => {
    expect(() => loadFunctionApp(path.join(fixtures, 'queue-app'), { extension: '.js' })).toThrow(
      /Function "orders" uses a queueTrigger trigger/,
    );
  });
});
