// Every role assignment of the deployment but one, each on the narrowest scope that works. (The
// trainer job's AcrPull is in trainer.bicep: it must exist before the job.)
// Role definition ids are Azure built-in roles (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
//
// Blob data roles are given per container (modules/containerRoles.bicep), for what each identity
// does with that container; no identity holds a blob role on the whole account, and none holds
// Storage Blob Data Owner outside the Functions host's own containers. The one account-wide data
// role is the function identity's queue role (below, with the reason); test/unit/infra/roles.test.ts
// holds every assignment to this.

param storageAccountName string
param applicationInsightsName string
param trainerJobName string

param functionPrincipalId string
param trainerPrincipalId string

@description('Principal id of the storage account system topic\'s system-assigned identity (Event Grid dead-lettering).')
param eventGridPrincipalId string

@description('Container Event Grid writes undeliverable events to (CONTAINERS.deadLetter).')
param deadLetterContainerName string

@description('Every pipeline container (CONTAINERS in src/storage/layout.ts, created by modules/storage.bicep).')
param pipelineContainerNames array

@description('Containers the Functions host keeps its own state in (leases, blob receipts, timer schedules, keys).')
param hostContainerNames array

@description('Container the Flex Consumption app deploys its package from.')
param deploymentContainerName string

@description('Optional: a person (or CI principal) who uploads and reads blobs with Entra ID.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param operatorPrincipalType string = 'User'

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  containerAppsJobsOperator: 'b9a307c4-5aa3-4b52-ba60-2b17c136cd7b' // Container Apps Jobs Operator
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// What each identity does with each pipeline container (src/handlers, src/jobs, src/registry):
// test/unit/infra/roles.test.ts checks that the function app's two lists cover CONTAINERS exactly.
var functionReadContainers = [
  'uploads' // the preprocess trigger's input, the sweep and the review page read uploads; nothing in Azure writes them but uploaders
  'models' // the model cache reads models/current.json and versions; the trainer and operators promote
  'deadletter' // /api/status counts dead letters; Event Grid writes them
]
var functionWriteContainers = [
  'preprocessed' // preprocess writes, infer and the sweep read
  'predictions' // infer
  'flagged' // infer writes and deletes (ETag-conditional)
  'rejected' // preprocess
  'labels' // the review API writes, undoes (deletes) and lists
  'runs' // retrain: manifests, run status, the retrain lease blob
]
var trainerReadContainers = [
  'labels' // the run's labelled images
  'preprocessed' // their pixels
]
var trainerWriteContainers = [
  'models' // the candidate version, and models/current.json when the gate promotes it
  'runs' // status, report, plots
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource trainerJob 'Microsoft.App/jobs@2025-01-01' existing = {
  name: trainerJobName
}

// Function app: the Functions host's own containers (azure-webjobs-hosts: leases, blob trigger
// receipts, timer schedules; azure-webjobs-secrets: function keys). Storage Blob Data Owner is what
// Microsoft documents for an identity-based AzureWebJobsStorage connection ("Connecting to host
// storage with an identity"), given here on those two containers only; storage.bicep creates them, so
// the host never needs to create a container.
module functionHostBlobOwner 'containerRoles.bicep' = {
  name: 'roles-function-host'
  params: {
    storageAccountName: storage.name
    containerNames: hostContainerNames
    principalId: functionPrincipalId
    roleId: roles.storageBlobDataOwner
  }
}

// Function app: the deployment package container (functionAppConfig.deployment authenticates with
// this identity to store and read the package).
module functionPackageContributor 'containerRoles.bicep' = {
  name: 'roles-function-package'
  params: {
    storageAccountName: storage.name
    containerNames: [
      deploymentContainerName
    ]
    principalId: functionPrincipalId
    roleId: roles.storageBlobDataContributor
  }
}

// Function app: the pipeline containers it only reads.
module functionBlobReader 'containerRoles.bicep' = {
  name: 'roles-function-read'
  params: {
    storageAccountName: storage.name
    containerNames: functionReadContainers
    principalId: functionPrincipalId
    roleId: roles.storageBlobDataReader
  }
}

// Function app: the pipeline containers it writes.
module functionBlobContributor 'containerRoles.bicep' = {
  name: 'roles-function-write'
  params: {
    storageAccountName: storage.name
    containerNames: functionWriteContainers
    principalId: functionPrincipalId
    roleId: roles.storageBlobDataContributor
  }
}

// Function app: the blob trigger's poison queue (webjobs-blobtrigger-poison) and host queues.
// Account scope: the host names and creates its queues at run time (creating a queue is an
// account-level operation that a queue-scoped assignment cannot allow), and the pipeline keeps no
// data of its own in queues, so this role reaches host coordination messages only.
resource functionQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Function app: Entra-authenticated telemetry to a component with local auth disabled.
resource functionMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Function app: read, start and stop executions of the trainer job, and nothing else.
resource functionJobsOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(trainerJob.id, functionPrincipalId, roles.containerAppsJobsOperator)
  scope: trainerJob
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.containerAppsJobsOperator)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Trainer job: reads the labelled images, writes models/ and runs/; nothing else of the account.
module trainerBlobReader 'containerRoles.bicep' = {
  name: 'roles-trainer-read'
  params: {
    storageAccountName: storage.name
    containerNames: trainerReadContainers
    principalId: trainerPrincipalId
    roleId: roles.storageBlobDataReader
  }
}

module trainerBlobContributor 'containerRoles.bicep' = {
  name: 'roles-trainer-write'
  params: {
    storageAccountName: storage.name
    containerNames: trainerWriteContainers
    principalId: trainerPrincipalId
    roleId: roles.storageBlobDataContributor
  }
}

// Trainer job: AcrPull on the registry is granted in trainer.bicep, before the job is created.

// Event Grid system topic: writes the events it could not deliver (deadLetterWithResourceIdentity in
// infra/eventgrid.bicep) to the dead-letter container, and nothing else of the account.
resource eventGridDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridPrincipalId, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Operator (the person running azd): uploads, labels, trains and promotes models, runs the sweep and
// clears dead letters with the CLI or `az storage --auth-mode login`, so it writes every pipeline
// container; it gets nothing on the host's containers (function keys) or the deployment package.
module operatorBlobContributor 'containerRoles.bicep' = if (!empty(operatorPrincipalId)) {
  name: 'roles-operator'
  params: {
    storageAccountName: storage.name
    containerNames: pipelineContainerNames
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    roleId: roles.storageBlobDataContributor
  }
}
