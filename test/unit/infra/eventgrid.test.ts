import * as fs from 'fs';
import * as path from 'path';
import { CONTAINERS, TRIGGER_PATHS } from '../../../src/storage/layout';
import {
  arrayItems,
  getPath,
  INFRA,
  loadBicep,
  objectEntries,
  readRepoFile,
  REPO_ROOT,
  resourcesOfType,
  stringLiteral,
  stringTemplate,
  variable,
} from './bicep';

/** Event Grid subject filter of a blob trigger path such as `preprocessed/{name}.npy`. */
function subjectFilter(triggerPath: string): { begins: string; ends: string } {
  const slash = triggerPath.indexOf('/');
  const container = triggerPath.slice(0, slash);
  const pattern = triggerPath.slice(slash + 1);
  const prefix = pattern.slice(0, pattern.indexOf('{'));
  const suffix = pattern.slice(pattern.lastIndexOf('}') + 1);
  return { begins: `/blobServices/default/containers/${container}/${prefix}`, ends: suffix };
}

describe('infra: Event Grid subscriptions (stage 2, infra/eventgrid.bicep)', () => {
  const { root } = loadBicep('eventgrid.bicep');
  const triggers = arrayItems(variable(root, 'blobTriggers')).map((item) => {
    const e = objectEntries(item);
    return {
      functionName: stringLiteral(e.get('functionName'))!,
      begins: stringLiteral(e.get('subjectBeginsWith'))!,
      ends: stringLiteral(e.get('subjectEndsWith'))!,
    };
  });
  const [subscription] = resourcesOfType(root, 'Microsoft.EventGrid/systemTopics/eventSubscriptions');

  it('has one subscription per blob-triggered function of TRIGGER_PATHS, with matching subject filters', () => {
    const expected = Object.entries(TRIGGER_PATHS).map(([fn, p]) => ({ functionName: fn, ...subjectFilter(p) }));
    expect(triggers.sort((a, b) => a.functionName.localeCompare(b.functionName))).toEqual(
      expected.sort((a, b) => a.functionName.localeCompare(b.functionName)),
    );
    expect(triggers.find((t) => t.functionName === 'infer')?.ends).toBe('.npy');
    expect(triggers.find((t) => t.functionName === 'preprocess')?.begins).toBe(
      '/blobServices/default/containers/uploads/',
    );
  });

  it('creates the subscriptions in a loop over that list', () => {
    expect(subscription).toBeDefined();
    expect(subscription!.node.text).toMatch(/for trigger in blobTriggers/);
    const filter = getPath(subscription!.body, ['properties', 'filter'])!;
    expect(getPath(filter, ['subjectBeginsWith'])?.text).toBe('trigger.subjectBeginsWith');
    expect(getPath(filter, ['subjectEndsWith'])?.text).toContain('trigger.subjectEndsWith');
    expect(arrayItems(getPath(filter, ['includedEventTypes'])).map((n) => stringLiteral(n))).toEqual([
      'Microsoft.Storage.BlobCreated',
    ]);
  });

  it("delivers to each function's blobs-extension webhook with the blobs_extension system key", () => {
    const dest = getPath(subscription!.body, ['properties', 'destination'])!;
    expect(stringLiteral(getPath(dest, ['endpointType']))).toBe('WebHook');
    expect(stringTemplate(getPath(dest, ['properties', 'endpointUrl']))).toBe(
      '${webhookBase}?functionName=Host.Functions.${trigger.functionName}&code=${blobsExtensionKey}',
    );
    expect(stringTemplate(variable(root, 'webhookBase'))).toBe(
      'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs',
    );
    const key = variable(root, 'blobsExtensionKey')!.text;
    expect(key).toMatch(
      /^listKeys\(resourceId\('Microsoft\.Web\/sites\/host', functionAppName, 'default'\), '[\d-]+'\)\.systemKeys\.blobs_extension$/,
    );
  });

  it("dead-letters what it cannot deliver to the deadletter container, with the system topic's own identity", () => {
    const props = getPath(subscription!.body, ['properties'])!;
    const deadLetter = getPath(props, ['deadLetterWithResourceIdentity']);
    expect(deadLetter).toBeDefined();
    // The account takes no keys: the identity-less deadLetterDestination is not used.
    expect(getPath(props, ['deadLetterDestination'])).toBeUndefined();
    expect(stringLiteral(getPath(deadLetter!, ['identity', 'type']))).toBe('SystemAssigned');
    const dest = getPath(deadLetter!, ['deadLetterDestination'])!;
    expect(stringLiteral(getPath(dest, ['endpointType']))).toBe('StorageBlob');
    const [topic] = resourcesOfType(root, 'Microsoft.EventGrid/systemTopics');
    // The storage account the topic watches, i.e. the pipeline's.
    expect(getPath(dest, ['properties', 'resourceId'])?.text).toBe(`${topic!.symbol}.properties.source`);
    const container = getPath(dest, ['properties', 'blobContainerName'])!;
    expect(stringLiteral(container) ?? stringLiteral(variable(root, container.text))).toBe(CONTAINERS.deadLetter);
    // Every retry-policy limit ends in the dead-letter container, not in a drop.
    expect(getPath(props, ['retryPolicy', 'maxDeliveryAttempts'])?.text).toBe('maxDeliveryAttempts');
  });

  it('references the system topic stage 1 created on the storage account', () => {
    const [topic] = resourcesOfType(root, 'Microsoft.EventGrid/systemTopics');
    expect(topic?.existing).toBe(true);
    expect(getPath(subscription!.body, ['parent'])?.text).toBe(topic!.symbol);
  });
});

describe('infra: the post-deploy step runs stage 2 without a manual step', () => {
  const yaml = readRepoFile('azure.yaml');
  const hook = fs.readFileSync(path.join(INFRA, 'hooks', 'postdeploy.sh'), 'utf8');

  it('azure.yaml declares service api (ts, function) and a postdeploy hook running infra/hooks/postdeploy.sh', () => {
    expect(yaml).toMatch(/^services:\n {2}api:\n(?: {4}.*\n)*? {4}language: ts\n {4}host: function/m);
    expect(yaml).toMatch(/^hooks:\n {2}postdeploy:\n(?:.*\n)*? {6}run: \.\/infra\/hooks\/postdeploy\.sh/m);
    expect(yaml).toMatch(/^infra:\n {2}provider: bicep\n {2}path: infra\n {2}module: main/m);
  });

  it('the hook waits for the key, then deploys infra/eventgrid.bicep with the azd outputs', () => {
    expect(fs.statSync(path.join(INFRA, 'hooks', 'postdeploy.sh')).mode & 0o111).not.toBe(0);
    expect(hook).toContain('systemKeys.blobs_extension');
    expect(hook).toMatch(/az deployment group create[\s\S]*--template-file "\$infra\/eventgrid\.bicep"/);
    expect(hook).toMatch(/functionAppName="\$FUNCTION_APP_NAME"/);
    expect(hook).toMatch(/systemTopicName="\$EVENTGRID_SYSTEM_TOPIC_NAME"/);
  });

  it('every azd value the hook reads is an output of main.bicep', () => {
    const main = loadBicep('main.bicep').text;
    const read = new Set([...hook.matchAll(/\$\{?([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!));
    const hookOwn = new Set(['BLOBS_KEY_WAIT_ATTEMPTS', 'SKIP_TRAINER_IMAGE_BUILD']);
    for (const name of read) {
      if (hookOwn.has(name)) continue;
      expect({ name, output: new RegExp(`^output ${name} `, 'm').test(main) }).toEqual({ name, output: true });
    }
  });

  it('the build context the hook assembles has what the Dockerfile copies', () => {
    const dockerfile = fs.readFileSync(path.join(INFRA, 'trainer.Dockerfile'), 'utf8');
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(?:--chown=\S+ )?(.+) \S+$/gm)].flatMap((m) =>
      m[1]!.split(/\s+/),
    );
    for (const item of copied) {
      expect(fs.existsSync(path.join(REPO_ROOT, item))).toBe(true);
      if (item.startsWith('infra/trainer/')) {
        // Copied to the same path in the context (the Dockerfile also builds from the repository root).
        const file = item.slice('infra/trainer/'.length);
        expect(hook).toMatch(
          new RegExp(
            `^cp [^\\n]*"\\$infra/trainer/${file.replace('.', '\\.')}"[^\\n]* "\\$context/infra/trainer/"$`,
            'm',
          ),
        );
      } else {
        expect(hook).toMatch(new RegExp(`for item in [^;]*\\b${item.replace('.', '\\.')}\\b`));
      }
    }
    expect(copied).toEqual(expect.arrayContaining(['infra/trainer/package.json', 'infra/trainer/package-lock.json']));
  });
});
