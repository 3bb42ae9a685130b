// Every role assignment of the deployment but one, each on the narrowest scope that works. (The
// trainer job's AcrPull is in trainer.bicep: it must exist before the job.)
// Role definition ids are Azure built-in roles (learn.microsoft.com/azure/role-based-access-control/built-in-roles).

param storageAccountName string
param applicationInsightsName string
param trainerJobName string

param functionPrincipalId string
param trainerPrincipalId string

@description('Principal id of the storage account system topic\'s system-assigned identity (Event Grid dead-lettering).')
param eventGridPrincipalId string

@description('Container Event Grid writes undeliverable events to (CONTAINERS.deadLetter).')
param deadLetterContainerName string

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

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource trainerJob 'Microsoft.App/jobs@2025-01-01' existing = {
  name: trainerJobName
}

// Function app: host storage (leases, receipts, deployment package) and blob trigger data.
resource functionBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Function app: the blob trigger's poison queue (webjobs-blobtrigger-poison) and host queues.
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

// Trainer job: reads labels and data, writes models/ and runs/.
resource trainerBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, trainerPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: trainerPrincipalId
    principalType: 'ServicePrincipal'
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

// Operator (the person running azd): upload images and read results with `--auth-mode login`.
resource operatorBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
