// Stage 2, run by infra/hooks/postdeploy.sh after the function code is deployed:
// BlobCreated subscriptions from the storage account's system topic to each blob-triggered
// function's blobs-extension webhook. Flex Consumption supports only Event Grid blob triggers
// (source: 'EventGrid'), and the webhook's key (systemKeys.blobs_extension) exists only once the
// host has loaded those triggers, so this cannot be part of stage 1. The key is read here by
// listKeys and never passes through the shell.
//
// An event that exhausts its retries (or that the webhook refuses outright: 400, 401, 403, 413) is
// dead-lettered, not dropped: written as JSON to the deadletter container of the same storage
// account by the system topic's own managed identity (the account takes no keys). Stage 1 gave the
// topic that identity (modules/storage.bicep) and Storage Blob Data Contributor on that container
// only (modules/roles.bicep).

targetScope = 'resourceGroup'

@description('Name of the function app (FUNCTION_APP_NAME).')
param functionAppName string

@description('Name of the storage account system topic (EVENTGRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Delivery attempts per event before it is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an undelivered event is retried before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// One entry per blob-triggered function; mirrors TRIGGER_PATHS in src/storage/layout.ts
// (uploads/{name} -> preprocess, preprocessed/{name}.npy -> infer). Checked by test/unit/infra.
var blobTriggers = [
  {
    functionName: 'preprocess'
    subjectBeginsWith: '/blobServices/default/containers/uploads/'
    subjectEndsWith: ''
  }
  {
    functionName: 'infer'
    subjectBeginsWith: '/blobServices/default/containers/preprocessed/'
    subjectEndsWith: '.npy'
  }
]

// CONTAINERS.deadLetter in src/storage/layout.ts (modules/storage.bicep creates it). Checked by test/unit/infra.
var deadLetterContainerName = 'deadletter'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

var blobsExtensionKey = listKeys(resourceId('Microsoft.Web/sites/host', functionAppName, 'default'), '2024-04-01').systemKeys.blobs_extension
var webhookBase = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs'

resource subscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for trigger in blobTriggers: {
    parent: systemTopic
    name: '${trigger.functionName}-blob-created'
    properties: {
      destination: {
        endpointType: 'WebHook'
        properties: {
          endpointUrl: '${webhookBase}?functionName=Host.Functions.${trigger.functionName}&code=${blobsExtensionKey}'
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      eventDeliverySchema: 'EventGridSchema'
      filter: {
        includedEventTypes: [
          'Microsoft.Storage.BlobCreated'
        ]
        subjectBeginsWith: trigger.subjectBeginsWith
        subjectEndsWith: empty(trigger.subjectEndsWith) ? null : trigger.subjectEndsWith
      }
      retryPolicy: {
        maxDeliveryAttempts: maxDeliveryAttempts
        eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
      }
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'SystemAssigned'
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            // The topic's source is the pipeline's storage account.
            resourceId: systemTopic.properties.source
            blobContainerName: deadLetterContainerName
          }
        }
      }
    }
  }
]

output subscriptionNames array = [for (trigger, i) in blobTriggers: subscriptions[i].name]
