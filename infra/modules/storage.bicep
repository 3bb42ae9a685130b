// The storage account of the pipeline: every container of src/storage/layout.ts (CONTAINERS),
// the Flex Consumption deployment container, and the Event Grid system topic the blob triggers
// subscribe to (the subscriptions themselves are created after code deploy, by infra/eventgrid.bicep).
// Keys are off: every client (function app, trainer job, operators, Event Grid dead-lettering)
// authenticates with Entra ID.

param location string
param tags object = {}

@minLength(3)
@maxLength(24)
param name string

@description('Blob container the Flex Consumption app deploys its package from.')
param deploymentContainerName string

@description('Name of the Event Grid system topic on this account.')
param systemTopicName string

@description('Days deleted blobs, blob versions and containers can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

@description('Days the events Event Grid could not deliver stay in the deadletter container (then the lifecycle policy deletes them and their versions).')
@minValue(1)
@maxValue(3650)
param deadLetterRetentionDays int = 30

@description('public: the account answers any network (every request still needs Entra ID). firewall or private: it denies every network but allowedSubnetIds, allowedIpRanges and Azure\'s trusted services (Event Grid dead-lettering); private adds private endpoints (main.bicep).')
@allowed([
  'public'
  'firewall'
  'private'
])
param networkAccess string = 'public'

@description('Subnets (with the Microsoft.Storage service endpoint) the firewall admits: the function app\'s and the trainer\'s.')
param allowedSubnetIds array = []

@description('Public IP addresses or CIDR ranges the firewall admits (an operator\'s machine).')
param allowedIpRanges array = []

// Where Event Grid writes the events it could not deliver (CONTAINERS.deadLetter; infra/eventgrid.bicep).
var deadLetterContainerName = 'deadletter'

// Mirrors CONTAINERS in src/storage/layout.ts; test/unit/infra checks the two stay equal.
var appContainers = [
  'uploads'
  'preprocessed'
  'predictions'
  'flagged'
  'rejected'
  'labels'
  'models'
  'runs'
  deadLetterContainerName
]

// The Functions host's own containers (HOST_CONTAINER in src/storage/layout.ts, and the key store of
// AzureWebJobsSecretStorageType=blob). Created here so that the function identity needs a role on
// these two containers only (modules/roles.bicep), never the right to create containers.
var hostContainers = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

var virtualNetworkRules = [
  for id in allowedSubnetIds: {
    id: id
    action: 'Allow'
  }
]
var ipRules = [
  for range in allowedIpRanges: {
    value: range
    action: 'Allow'
  }
]
// Deny by default. AzureServices lets the trusted Microsoft services through, Event Grid among them:
// the system topic dead-letters into the deadletter container with its managed identity. BlobCreated
// events are published by the storage service itself, which the firewall does not filter.
var firewall = {
  defaultAction: 'Deny'
  bypass: 'AzureServices'
  virtualNetworkRules: virtualNetworkRules
  ipRules: ipRules
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Enabled in every mode: with the firewall, the public endpoint still serves the trusted services
    // and allowedIpRanges; the app and the trainer come through their subnets or private endpoints.
    publicNetworkAccess: 'Enabled'
    networkAcls: networkAccess == 'public'
      ? {
          defaultAction: 'Allow'
          bypass: 'AzureServices'
        }
      : firewall
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Nothing is deleted by the pipeline; these protect against mistakes by people and tools.
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    isVersioningEnabled: true
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in appContainers: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource hostContainerResources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in hostContainers: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// Dead-lettered events are there to be looked at and re-driven (infra/README.md), not kept: without
// a rule they would pile up for as long as a subscription keeps failing.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-dead-letters'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadLetterContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  // Dead-lettering writes to the deadletter container with this identity (deadLetterWithResourceIdentity
  // in infra/eventgrid.bicep): the account takes no keys. roles.bicep grants it Storage Blob Data
  // Contributor on that container only.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
output containerNames array = appContainers
output hostContainerNames array = hostContainers
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainerName
