import {
  getPath,
  loadBicep,
  objectEntries,
  params,
  resourcesOfType,
  stringLiteral,
  syntaxErrors,
  variable,
} from './bicep';

describe('infra: sign-in for the review page', () => {
  const app = loadBicep('modules/functionapp.bicep').root;
  const main = loadBicep('main.bicep').root;
  const auth = resourcesOfType(app, 'config').find(
    (r) => stringLiteral(getPath(r.body, ['name'])) === 'authsettingsV2',
  );

  it('parses', () => {
    expect(syntaxErrors(app)).toEqual([]);
    expect(syntaxErrors(main)).toEqual([]);
  });

  it('configures App Service Authentication with Microsoft Entra ID only when a client id is given', () => {
    expect(auth).toBeDefined();
    expect(auth?.node.text).toMatch(/=\s*if \(reviewAuth == 'app-service'\)/);
    expect(
      getPath(auth!.body, ['properties', 'identityProviders', 'azureActiveDirectory', 'registration', 'clientId'])
        ?.text,
    ).toBe('reviewAuthClientId');
    expect(getPath(auth!.body, ['properties', 'platform', 'enabled'])?.text).toBe('true');
    // The Event Grid webhook and the function-key API stay reachable; the page refuses anonymous requests itself.
    expect(stringLiteral(getPath(auth!.body, ['properties', 'globalValidation', 'unauthenticatedClientAction']))).toBe(
      'AllowAnonymous',
    );
    const mainText = main.text;
    expect(mainText).toMatch(/reviewAuth: empty\(reviewAuthClientId\) \? 'off' : 'app-service'/);
    const mainParams = new Map(params(main).map((p) => [p.name, p]));
    expect(stringLiteral(mainParams.get('reviewAuthClientId')?.defaultValue)).toBe('');
    expect(mainParams.get('reviewAuthClientSecret')?.decorators.join(' ')).toMatch(/secure/);
  });

  it('tells the app which mode it is in', () => {
    const settings = objectEntries(variable(app, 'appSettings')!);
    expect(settings.get('TRIAGE_REVIEW_AUTH')?.text).toBe('reviewAuth');
  });
});
